# Least-privilege Vault/OpenBao policy for `custos serve` (ledger/keys).
# Custos uses the transit engine at the mount "transit" and nothing else.
# Every path below is one call Custos makes; nothing grants export, backup,
# restore, rotate-by-name of the signing key, or access to other keys.
# services/natsd/deploy_test.go checks this file against the calls.
#
# Not listed because Vault needs no policy for them: sys/health
# (unauthenticated, Custos's readiness check), auth/approle/login
# (unauthenticated, the AppRole login), and auth/token/lookup-self and
# renew-self (granted by Vault's default policy).

# The checkpoint signing key (ed25519): created once if missing (create;
# update when it already exists), its public half read for the verifier
# key. Never deletable: no delete, and no access to its config.
path "transit/keys/custos-checkpoint" {
  capabilities = ["create", "read", "update"]
}

path "transit/sign/custos-checkpoint" {
  capabilities = ["update"]
}

# The meta key (aes256-gcm96) wraps Custos's pseudonymization key: created
# once, then a data key is made under it once and unwrapped at each start.
path "transit/keys/custos-meta" {
  capabilities = ["create", "read", "update"]
}

path "transit/datakey/plaintext/custos-meta" {
  capabilities = ["update"]
}

path "transit/decrypt/custos-meta" {
  capabilities = ["update"]
}

# One key per data subject, named by pseudonym (custos-subject-<pseudonym>):
# created on the subject's first event, read to check it exists, and
# destroyed on erasure (config deletion_allowed=true, then DELETE). The glob
# also covers transit/keys/custos-subject-<pseudonym>/config (needed) and
# the key's rotate/trim endpoints (unused; at worst they make a subject's
# data unreadable, which Custos may do anyway by destroying the key).
path "transit/keys/custos-subject-*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "transit/datakey/plaintext/custos-subject-*" {
  capabilities = ["update"]
}

path "transit/decrypt/custos-subject-*" {
  capabilities = ["update"]
}
