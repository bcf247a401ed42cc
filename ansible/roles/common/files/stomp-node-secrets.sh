#!/bin/bash
# stomp-node-secrets ROLE
#
# Runs as root before every start of stomp-ROLE.service (ExecStartPre=+...)
# and writes /run/stomp-ROLE/secrets.env (tmpfs, root:stomp-ROLE 0640), which
# the unit reads as an EnvironmentFile:
#   gateway: GATEWAY_REDIS_URL, GATEWAY_JWT_SECRET_FILE, GATEWAY_RESUME_KEY_FILE
#   api:     REDIS_URL, DATABASE_URL, API_JWT_SECRET_FILE
# from the Secrets Manager secrets named in /etc/stomp/node.env (written by
# the instance's user data). The JWT HMAC key (one secret: the api checks the
# same tokens as the gateways) goes into a file of its own,
# /run/stomp-ROLE/jwt-secret (root:stomp-ROLE 0640: only root writes it, only
# the service reads it; tmpfs, so never on disk), which
# GATEWAY_JWT_SECRET_FILE / API_JWT_SECRET_FILE names: the key never enters
# an environment. The gateways' resume-token key (the same secret for every
# gateway) is handled the same way: /run/stomp-gateway/resume-key, named by
# GATEWAY_RESUME_KEY_FILE. DATABASE_URL asks for TLS (sslmode=require; RDS forces
# it): the api verifies the server with API_DATABASE_CA_FILE, the RDS CA
# bundle baked into the AMI (ansible role api).
# Fetching at every start, not at boot, picks up rotated passwords (RDS
# rotates its master password) on the next restart.
# Without /etc/stomp/node.env (hosts outside AWS) the file is left empty and
# the settings come from the unit's other environment files.
set -euo pipefail

role=${1:?usage: stomp-node-secrets gateway|api}
case $role in
    gateway | api) ;;
    *)
        echo "stomp-node-secrets: unknown role '$role'" >&2
        exit 2
        ;;
esac

node_env=/etc/stomp/node.env
out_dir=/run/stomp-$role
out=$out_dir/secrets.env

install -d -m 0750 -o "stomp-$role" -g "stomp-$role" "$out_dir"
tmp=$(mktemp "$out_dir/.secrets.env.XXXXXX")
key_tmp=""
cleanup() {
    rm -f -- "$tmp"
    if [[ -n $key_tmp ]]; then
        rm -f -- "$key_tmp"
    fi
}
trap cleanup EXIT
chmod 0640 "$tmp"
chown "root:stomp-$role" "$tmp"

# Value of KEY in node.env (KEY=VALUE lines, no quoting).
node_var() {
    sed -n "s/^$1=//p" "$node_env" | tail -n 1
}

# SecretString of a secret, retried: right after boot the credentials or the
# endpoint may not be ready yet.
secret_string() {
    local attempt
    for attempt in 1 2 3 4 5 6; do
        if aws --region "$region" secretsmanager get-secret-value --secret-id "$1" \
            --query SecretString --output text; then
            return 0
        fi
        sleep $((attempt * 2))
    done
    echo "stomp-node-secrets: cannot read secret $1" >&2
    return 1
}

json_field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

if [[ -r $node_env ]]; then
    region=$(node_var AWS_REGION)
    redis_secret=$(node_var STOMP_REDIS_SECRET_ARN)
    redis_url=""
    if [[ -n $redis_secret ]]; then
        redis_url=$(secret_string "$redis_secret" | json_field url)
    fi

    # HMAC key of HS* JWTs (SecretString as is; the services drop a trailing
    # newline). Written straight from the AWS CLI to the file, never through
    # a variable or the environment.
    case $role in
        gateway) jwt_file_var=GATEWAY_JWT_SECRET_FILE ;;
        api) jwt_file_var=API_JWT_SECRET_FILE ;;
    esac
    jwt_secret=$(node_var STOMP_JWT_SECRET_ARN)
    if [[ -n $jwt_secret ]]; then
        key_tmp=$(mktemp "$out_dir/.jwt-secret.XXXXXX")
        chmod 0640 "$key_tmp"
        chown "root:stomp-$role" "$key_tmp"
        secret_string "$jwt_secret" >"$key_tmp"
        # An empty key would let anyone sign tokens: refuse to start.
        grep -q '[^[:space:]]' "$key_tmp" || {
            echo "stomp-node-secrets: secret $jwt_secret is empty" >&2
            exit 1
        }
        mv -f -- "$key_tmp" "$out_dir/jwt-secret"
        key_tmp=""
        printf '%s=%s\n' "$jwt_file_var" "$out_dir/jwt-secret" >>"$tmp"
    else
        rm -f -- "$out_dir/jwt-secret"
    fi

    # HMAC key of the gateways' resume tokens (gateways only; SecretString as
    # is, written like the JWT key: straight into its own file).
    if [[ $role == gateway ]]; then
        resume_secret=$(node_var STOMP_RESUME_KEY_SECRET_ARN)
        if [[ -n $resume_secret ]]; then
            key_tmp=$(mktemp "$out_dir/.resume-key.XXXXXX")
            chmod 0640 "$key_tmp"
            chown "root:stomp-$role" "$key_tmp"
            secret_string "$resume_secret" >"$key_tmp"
            # An empty key would let anyone sign resume tokens: refuse to start.
            grep -q '[^[:space:]]' "$key_tmp" || {
                echo "stomp-node-secrets: secret $resume_secret is empty" >&2
                exit 1
            }
            mv -f -- "$key_tmp" "$out_dir/resume-key"
            key_tmp=""
            printf 'GATEWAY_RESUME_KEY_FILE=%s\n' "$out_dir/resume-key" >>"$tmp"
        else
            rm -f -- "$out_dir/resume-key"
        fi
    fi

    case $role in
        gateway)
            if [[ -n $redis_url ]]; then
                printf 'GATEWAY_REDIS_URL=%s\n' "$redis_url" >>"$tmp"
            fi
            ;;
        api)
            if [[ -n $redis_url ]]; then
                printf 'REDIS_URL=%s\n' "$redis_url" >>"$tmp"
            fi
            db_secret=$(node_var STOMP_DB_SECRET_ARN)
            if [[ -n $db_secret ]]; then
                secret_string "$db_secret" | python3 -c '
import json, sys
from urllib.parse import quote
s = json.load(sys.stdin)
host, port, name = sys.argv[1:4]
print("DATABASE_URL=postgres://%s:%s@%s:%s/%s?sslmode=require" % (
    quote(s["username"], safe=""), quote(s["password"], safe=""), host, port, name))
' "$(node_var STOMP_DB_HOST)" "$(node_var STOMP_DB_PORT)" "$(node_var STOMP_DB_NAME)" >>"$tmp"
            fi
            ;;
    esac
fi

mv -f -- "$tmp" "$out"
trap - EXIT
