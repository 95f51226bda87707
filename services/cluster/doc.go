// Package cluster holds no code of its own: its tests run Custos on a
// three-node NATS JetStream cluster with replicated ledger streams and
// region placement (two Custos processes, stream leader failover), and as a
// real `custos serve` process killed with SIGKILL mid-load. They check the
// API's idempotent re-send (docs/openapi.yaml), read-your-writes across
// processes and the single, fork-free checkpoint sequence that `custos
// verify` accepts (docs/architecture.md, docs/deploy.md).
package cluster
