# Vault/OpenBao policy for an auditor who wants the checkpoint verifier key
# straight from Vault rather than from Custos (GET /v1/checkpoint/key) or
# from a copy handed over: read the public half of the signing key, nothing
# else. The key is non-exportable; reading it shows only public keys.
path "transit/keys/custos-checkpoint" {
  capabilities = ["read"]
}
