package warm
import (
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/open-policy-agent/opa/v1/tester"
	_ "github.com/hashicorp/vault/api"
	_ "github.com/hashicorp/vault/sdk/helper/keysutil"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/cloudevents/sdk-go/v2"
	_ "golang.org/x/mod/sumdb/note"
	_ "github.com/transparency-dev/merkle/compact"
)
