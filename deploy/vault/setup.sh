#!/bin/sh
# Prepares a Vault or OpenBao server for Custos:
#   - enables the transit secrets engine at transit/ (if not yet enabled);
#   - writes the policies custos (custos-policy.hcl) and custos-auditor
#     (auditor-policy.hcl);
#   - enables AppRole (if not yet enabled) and creates the role `custos`
#     bound to the custos policy;
#   - prints how custos serve logs in.
# Safe to run again: every step is idempotent.
#
# Environment:
#   VAULT_CLI            vault or bao (default: bao if installed, else vault)
#   VAULT_ADDR/BAO_ADDR  server address;  VAULT_TOKEN/BAO_TOKEN  an admin token
#   CUSTOS_TOKEN_TTL     lifetime of Custos's login token (default 768h).
#                        Custos logs in at start; restart it (rolling) within
#                        this time. Vault caps it at the mount's max TTL.
#   CUSTOS_ROLE_ID       optional: set the role's role_id to this value
#   CUSTOS_SECRET_ID     optional: register this secret_id for the role
#                        (deploy/compose uses both, from its .env);
#                        otherwise mint one with the command printed below.
#   CUSTOS_SECRET_ID_CIDRS optional: comma-separated CIDRs allowed to use
#                        secret ids (e.g. the custos nodes' network)
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${VAULT_CLI:-}" ]; then
	if command -v bao >/dev/null 2>&1; then VAULT_CLI=bao; else VAULT_CLI=vault; fi
fi
command -v "$VAULT_CLI" >/dev/null 2>&1 || { echo "setup.sh: $VAULT_CLI not found (set VAULT_CLI=vault or bao)" >&2; exit 2; }

# The bao CLI reads BAO_*, the vault CLI VAULT_*; accept either.
if [ -n "${VAULT_ADDR:-}" ] && [ -z "${BAO_ADDR:-}" ]; then export BAO_ADDR="$VAULT_ADDR"; fi
if [ -n "${BAO_ADDR:-}" ] && [ -z "${VAULT_ADDR:-}" ]; then export VAULT_ADDR="$BAO_ADDR"; fi
if [ -n "${VAULT_TOKEN:-}" ] && [ -z "${BAO_TOKEN:-}" ]; then export BAO_TOKEN="$VAULT_TOKEN"; fi
if [ -n "${BAO_TOKEN:-}" ] && [ -z "${VAULT_TOKEN:-}" ]; then export VAULT_TOKEN="$BAO_TOKEN"; fi

v() { "$VAULT_CLI" "$@"; }

if v secrets list -format=json | grep -q '"transit/"'; then
	echo "transit: already enabled"
else
	v secrets enable -path=transit transit
fi

v policy write custos "$here/custos-policy.hcl"
v policy write custos-auditor "$here/auditor-policy.hcl"

if v auth list -format=json | grep -q '"approle/"'; then
	echo "approle: already enabled"
else
	v auth enable approle
fi

# secret_id_num_uses=0 and secret_id_ttl=0: every custos replica logs in
# with the same secret id at each start. Rotate it by minting a new one and
# destroying the old (secret-id/destroy).
v write auth/approle/role/custos \
	token_policies=custos \
	token_ttl="${CUSTOS_TOKEN_TTL:-768h}" \
	token_max_ttl="${CUSTOS_TOKEN_TTL:-768h}" \
	secret_id_ttl=0 \
	secret_id_num_uses=0 \
	${CUSTOS_SECRET_ID_CIDRS:+secret_id_bound_cidrs="$CUSTOS_SECRET_ID_CIDRS"}

if [ -n "${CUSTOS_ROLE_ID:-}" ]; then
	v write auth/approle/role/custos/role-id role_id="$CUSTOS_ROLE_ID" >/dev/null
fi
if [ -n "${CUSTOS_SECRET_ID:-}" ]; then
	if v write -format=json auth/approle/role/custos/secret-id/lookup secret_id="$CUSTOS_SECRET_ID" 2>/dev/null | grep -q secret_id_accessor; then
		echo "approle custos: the given secret id is already registered"
	else
		v write auth/approle/role/custos/custom-secret-id secret_id="$CUSTOS_SECRET_ID" >/dev/null
		echo "approle custos: registered the given secret id"
	fi
fi

role_id=$(v read -field=role_id auth/approle/role/custos/role-id)
cat <<MSG

Custos is set up on $VAULT_CLI at ${VAULT_ADDR:-the default address}.

  role_id: $role_id

Mint a secret id for the custos servers (keep it like a password):

  $VAULT_CLI write -f -field=secret_id auth/approle/role/custos/secret-id

and start each custos with

  VAULT_ROLE_ID=$role_id VAULT_SECRET_ID=<secret id> \\
    custos serve --vault-addr ${VAULT_ADDR:-https://vault.example:8200} ...

An auditor who wants the verifier key from Vault itself gets a token with
the custos-auditor policy:

  $VAULT_CLI token create -policy=custos-auditor -ttl=24h
MSG
