#!/bin/sh
# Makes the secrets of the compose stack: .env (passwords and the AppRole
# ids, read by docker compose) and secrets/ (files mounted into containers).
# Refuses to overwrite existing ones: the NATS passwords and the unseal key
# must stay what the servers were started with.
set -eu
cd "$(dirname "$0")"

if [ -e .env ] || [ -e secrets ]; then
	echo "gen-secrets.sh: .env or secrets/ already exist; remove both to start over (this loses the stack's data)" >&2
	exit 1
fi

# A password NATS reads from the environment must be one token starting
# with a letter (deploy/nats/accounts.conf): "p" + 48 hex digits.
pw() { printf 'p%s' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }

umask 077
mkdir secrets

custos_pw=$(pw)
auditor_pw=$(pw)
cat > .env <<ENV
CUSTOS_NATS_PASSWORD=$custos_pw
AUDITOR_NATS_PASSWORD=$auditor_pw
AUDIT_ADMIN_NATS_PASSWORD=$(pw)
REGULATOR_NATS_PASSWORD=$(pw)
NATS_SYSTEM_PASSWORD=$(pw)
NATS_ROUTE_PASSWORD=$(pw)
CUSTOS_VAULT_ROLE_ID=$(pw)
CUSTOS_VAULT_SECRET_ID=$(pw)
ENV

printf '{"user": "custos", "password": "%s"}\n' "$custos_pw" > secrets/nats-custos.json
# For `custos verify --nats-creds deploy/compose/secrets/nats-auditor.json`
# from the host (nats-1's client port is published on 127.0.0.1:4222).
printf '{"url": "nats://127.0.0.1:4222", "user": "auditor", "password": "%s"}\n' "$auditor_pw" > secrets/nats-auditor.json
# The admin token both custos replicas import at start (format of
# services/auth: cst_<16 hex>_<43 base64url>).
printf 'cst_%s_%s\n' "$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
	"$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" > secrets/admin.token
head -c 32 /dev/urandom > secrets/openbao-unseal.key

# The containers run as other users (custos as 65532, openbao as its own):
# let them read the mounted files. The directory itself stays private.
chmod 644 secrets/*
echo "wrote $(pwd)/.env and $(pwd)/secrets/; now: docker compose up -d --build"
