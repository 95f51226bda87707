package keyserver

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// sysHealth answers sys/health: always initialized, unsealed and active,
// since there is no seal and no cluster.
func (s *Server) sysHealth() *response {
	st := s.stateCopy()
	return &response{raw: map[string]any{
		"initialized":                       true,
		"sealed":                            false,
		"standby":                           false,
		"performance_standby":               false,
		"replication_performance_mode":      "disabled",
		"replication_dr_mode":               "disabled",
		"server_time_utc":                   time.Now().Unix(),
		"version":                           vaultVersion,
		"enterprise":                        false,
		"cluster_name":                      st.ClusterName,
		"cluster_id":                        st.ClusterID,
		"echo_duration_ms":                  0,
		"clock_skew_ms":                     0,
		"replication_primary_canary_age_ms": 0,
		"removed_from_cluster":              false,
	}}
}

func (s *Server) sysSealStatus() *response {
	st := s.stateCopy()
	return &response{raw: map[string]any{
		"type":          "shamir",
		"initialized":   true,
		"sealed":        false,
		"t":             1,
		"n":             1,
		"progress":      0,
		"nonce":         "",
		"version":       vaultVersion,
		"build_date":    "",
		"migration":     false,
		"cluster_name":  st.ClusterName,
		"cluster_id":    st.ClusterID,
		"recovery_seal": false,
		"storage_type":  "file",
	}}
}

func mountOutput(typ, uuid, accessor, description string) map[string]any {
	return map[string]any{
		"type":                    typ,
		"uuid":                    uuid,
		"accessor":                accessor,
		"description":             description,
		"config":                  map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
		"options":                 nil,
		"local":                   false,
		"seal_wrap":               false,
		"external_entropy_access": false,
		"plugin_version":          "",
		"running_plugin_version":  "v" + strings.SplitN(vaultVersion, "+", 2)[0] + "+builtin.vault",
		"running_sha256":          "",
		"deprecation_status":      "supported",
	}
}

func (s *Server) sysMountsList() *response {
	st := s.stateCopy()
	data := map[string]any{
		"sys/": mountOutput("system", st.ClusterID, "system_"+st.ClusterID[:8], "system endpoints used for control, policy and debugging"),
	}
	for _, info := range s.mountList() {
		data[info.Path] = mountOutput("transit", info.UUID, info.Accessor, info.Description)
	}
	return &response{data: data, mountType: "system"}
}

// sysMount handles sys/mounts/:path: POST enables a transit mount, DELETE
// disables one and shreds its keys.
func (s *Server) sysMount(req *request, path string) (*response, error) {
	path = strings.Trim(path, "/") + "/"
	switch req.op {
	case opUpdate:
		typ, _, err := req.data.str("type")
		if err != nil {
			return nil, err
		}
		if typ == "" {
			return nil, userError("backend type must be specified as a string")
		}
		if typ != "transit" {
			return nil, userError(fmt.Sprintf("plugin not found in the catalog: %s (this key server offers only \"transit\")", typ))
		}
		if !validMountPath(path) {
			return nil, userError("invalid mount path")
		}
		for _, reserved := range []string{"sys/", "auth/", "cubbyhole/", "identity/"} {
			if strings.HasPrefix(path, reserved) {
				return nil, userError(fmt.Sprintf("cannot mount under %s", reserved))
			}
		}
		desc, _, err := req.data.str("description")
		if err != nil {
			return nil, err
		}
		if err := s.enableMount(path, desc); err != nil {
			return nil, err
		}
		return nil, nil
	case opDelete:
		if !validMountPath(path) {
			return nil, userError("invalid mount path")
		}
		return nil, s.disableMount(path)
	}
	return nil, &apiError{status: http.StatusMethodNotAllowed, msgs: []string{vaultSentinel("unsupported operation")}}
}

// lookupSelf answers auth/token/lookup-self for the root token.
func (s *Server) lookupSelf() *response {
	st := s.stateCopy()
	return &response{mountType: "token", data: map[string]any{
		"accessor":         st.TokenAccessor,
		"creation_time":    st.TokenCreated.Unix(),
		"creation_ttl":     0,
		"display_name":     "root",
		"entity_id":        "",
		"expire_time":      nil,
		"explicit_max_ttl": 0,
		"id":               s.token,
		"issue_time":       st.TokenCreated.Format(time.RFC3339Nano),
		"meta":             nil,
		"num_uses":         0,
		"orphan":           true,
		"path":             "auth/token/root",
		"policies":         []string{"root"},
		"renewable":        false,
		"ttl":              0,
		"type":             "service",
	}}
}

func (s *Server) stateCopy() persistedState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state
}
