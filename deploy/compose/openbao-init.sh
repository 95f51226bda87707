#!/bin/sh
# One-shot job of the compose stack: initializes OpenBao on first start,
# then runs deploy/vault/setup.sh (idempotent) with the AppRole ids from .env
# so the custos replicas can log in with VAULT_ROLE_ID/VAULT_SECRET_ID.
#
# DEMONSTRATION ONLY: the root token and recovery key are kept on the
# openbao-init volume so the job can run again. In production initialize by
# hand, hand the recovery keys to their custodians, run setup.sh, and revoke
# the root token (bao token revoke -self).
set -eu
export BAO_ADDR="${BAO_ADDR:-http://openbao:8200}"

# bao status: 0 unsealed, 2 sealed or not initialized, 1 no answer.
tries=0
while :; do
	rc=0
	bao status >/dev/null 2>&1 || rc=$?
	[ "$rc" -ne 1 ] && break
	tries=$((tries + 1))
	[ "$tries" -ge 120 ] && { echo "openbao-init: no answer from $BAO_ADDR" >&2; exit 1; }
	sleep 1
done

# bao operator init -status: 0 initialized, 2 not initialized.
rc=0
bao operator init -status >/dev/null 2>&1 || rc=$?
if [ "$rc" -eq 2 ]; then
	umask 077
	bao operator init -recovery-shares=1 -recovery-threshold=1 > /init/init.txt
	echo "openbao-init: initialized; recovery key and root token in the openbao-init volume"
elif [ "$rc" -ne 0 ]; then
	echo "openbao-init: cannot tell whether OpenBao is initialized" >&2
	exit 1
fi

# The static seal unseals by itself once initialized.
tries=0
until bao status >/dev/null 2>&1; do
	tries=$((tries + 1))
	[ "$tries" -ge 60 ] && { echo "openbao-init: OpenBao stays sealed" >&2; exit 1; }
	sleep 1
done

BAO_TOKEN=$(sed -n 's/^Initial Root Token: //p' /init/init.txt)
export BAO_TOKEN
[ -n "$BAO_TOKEN" ] || { echo "openbao-init: no root token in /init/init.txt" >&2; exit 1; }
VAULT_CLI=bao exec sh /deploy/vault/setup.sh
