# OpenBao server for the compose stack (docker-compose.yaml).
#
# Integrated (raft) storage on the openbao volume: OpenBao deprecates the
# file backend in 2.6 and removes it in 2.7, and raft gives the snapshots
# deploy/README.md relies on for backups (bao operator raft snapshot save).
storage "raft" {
  path    = "/openbao/file"
  node_id = "openbao-1"
}

# Plain HTTP inside the compose network only; the port is not published.
# In production terminate TLS here (tls_cert_file, tls_key_file) and give
# custos --vault-addr https://...
listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

api_addr     = "http://openbao:8200"
cluster_addr = "http://openbao:8201"

# Unseals itself at every start from a 32-byte key made by gen-secrets.sh.
# Fine for a demonstration; in production the unseal key belongs in an HSM
# or a cloud KMS (seal "pkcs11", "awskms", ...), never next to the data.
seal "static" {
  current_key_id = "compose-1"
  current_key    = "file:///openbao/unseal/key"
}

disable_mlock = true
ui            = false
