#!/usr/bin/env bash
# A throwaway mail system for the tests and the demo: Dovecot (IMAP, LMTP) and Postfix (SMTP),
# Debian packages, each from its own configuration in DIR, on 127.0.0.1 only.
#
#   scripts/mail.sh install
#   scripts/mail.sh start DIR IMAP SMTP LMTP [IMAPS SMTPS [SUBMISSION AUTH [INTROSPECTION]]]
#                                                  install if missing, configure, start
#
# IMAP and SMTP also offer STARTTLS; IMAPS and SMTPS (when given) are TLS from the first byte.
# SUBMISSION (when given) takes mail only after STARTTLS and SMTP AUTH with a mailbox's password
# (Postfix asks Dovecot's auth service, which listens on AUTH).
# INTROSPECTION (when given) is the URL of an OAuth 2.0 token introspection endpoint (RFC 7662):
# IMAP and SUBMISSION then also take SASL XOAUTH2 and OAUTHBEARER, with a token that endpoint
# calls active for the mailbox (Dovecot's oauth2 passdb), as Microsoft 365 and Google do.
# The certificate is for localhost and 127.0.0.1, signed by a throwaway CA in DIR/tls/ca.pem.
#   scripts/mail.sh stop DIR
#   scripts/mail.sh stop-imap DIR | start-imap DIR            Dovecot alone (outage tests)
#   scripts/mail.sh uidvalidity DIR USER VALUE                 as if USER's INBOX were recreated
#
# Mailboxes: every "user@domain:password" in MAIL_USERS (default below); Postfix accepts mail for
# their domains (others are refused with 550 unless relayed from 127.0.0.1) and hands it to
# Dovecot over LMTP. Passwords are plain text: this is a test bed, never a mail server.
set -euo pipefail

MAIL_USERS=${MAIL_USERS:-"office@office.test:office-password client@client.test:client-password other@client.test:other-password"}
# Addresses Postfix accepts but Dovecot does not know: mail to them bounces after acceptance,
# as a real DSN from Postfix.
MAIL_GONE=${MAIL_GONE:-"gone@client.test"}

install() {
  if command -v dovecot >/dev/null && command -v postfix >/dev/null \
    && [ -x /usr/lib/dovecot/lmtp ] && [ -x /usr/lib/dovecot/imap ]; then
    return 0
  fi
  echo "mail.sh: installing Dovecot and Postfix (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-lmtpd postfix >&2 || {
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends dovecot-imapd dovecot-lmtpd postfix >&2
  }
}

make_certificates() {
  local tls=$1
  mkdir -p "$tls"
  [ -f "$tls/server.pem" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 30 \
    -subj "/CN=casebridge test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
    -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$tls/ext.cnf"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/server.pem" -days 30 -extfile "$tls/ext.cnf" 2>/dev/null
  chmod 0644 "$tls/server.pem" "$tls/ca.pem"
  chmod 0600 "$tls/server.key"
}

write_config() {
  local dir=$1 imap=$2 smtp=$3 lmtp=$4 imaps=${5:-0} smtps=${6:-} submission=${7:-} auth=${8:-0}
  local introspection=${9:-} mechanisms="plain login" oauth_passdb=""
  if [ -n "$introspection" ]; then
    # The password file stays first for every lookup (LMTP's userdb lookups name no
    # mechanism); a token is no password there, and the oauth2 passdb is asked next.
    mechanisms="plain login xoauth2 oauthbearer"
    oauth_passdb="passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $dir/dovecot-oauth2.conf.ext
}"
    printf '%s\n' "introspection_mode = post" "introspection_url = $introspection" \
      "username_attribute = username" "active_attribute = active" "active_value = true" \
      >"$dir/dovecot-oauth2.conf.ext"
  fi
  mkdir -p "$dir"/{mail,dovecot-run,dovecot-state,postfix,postfix-queue,postfix-data}
  make_certificates "$dir/tls"
  : >"$dir/passwd"
  : >"$dir/postfix/vmailbox"
  local domains="" entry user pass domain
  for entry in $MAIL_USERS; do
    user=${entry%%:*}
    pass=${entry#*:}
    domain=${user#*@}
    echo "$user:{PLAIN}$pass" >>"$dir/passwd"
    echo "$user $domain/${user%@*}/" >>"$dir/postfix/vmailbox"
    case " $domains " in *" $domain "*) ;; *) domains="$domains $domain" ;; esac
  done
  for user in $MAIL_GONE; do
    echo "$user ${user#*@}/${user%@*}/" >>"$dir/postfix/vmailbox"
  done
  chown -R mail:mail "$dir/mail"
  chmod 0644 "$dir/passwd"
  echo "$imap $smtp $lmtp" >"$dir/ports"

  cat >"$dir/dovecot.conf" <<EOF
base_dir = $dir/dovecot-run
state_dir = $dir/dovecot-state
instance_name = casebridge-test-$imap
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
disable_plaintext_auth = no
auth_mechanisms = $mechanisms
log_path = $dir/dovecot.log
mail_location = maildir:$dir/mail/%d/%n
mail_uid = mail
mail_gid = mail
first_valid_uid = 8
mail_privileged_group = mail
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
$oauth_passdb
userdb {
  driver = static
  args = uid=mail gid=mail home=$dir/mail/%d/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
service auth {
  inet_listener auth-smtp {
    address = 127.0.0.1
    port = $auth
  }
}
protocol lmtp {
  postmaster_address = postmaster@${domains# }
}
protocol imap {
  mail_max_userip_connections = 100
}
EOF

  cat >"$dir/postfix/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/postfix-queue
data_directory = $dir/postfix-data
mail_owner = postfix
myhostname = mail.test
mydomain = test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient
virtual_mailbox_domains =$domains
virtual_mailbox_maps = texthash:$dir/postfix/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:$lmtp
alias_maps =
alias_database =
local_transport = error:no local delivery on the test bed
default_transport = error:no delivery outside the test bed
message_size_limit = 62914560
maillog_file_prefixes = /var, /dev/stdout, $dir
maillog_file = $dir/postfix.log
biff = no
smtpd_tls_cert_file = $dir/tls/server.pem
smtpd_tls_key_file = $dir/tls/server.key
smtpd_tls_security_level = may
# A test bed retries deferred mail (Dovecot down) within seconds, not minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 4s
EOF

  cat >"$dir/postfix/master.cf" <<EOF
$smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  if [ -n "$smtps" ]; then
    printf '%s     inet  n       -       n       -       -       smtpd\n  -o smtpd_tls_wrappermode=yes\n' "$smtps" >>"$dir/postfix/master.cf"
  fi
  if [ -n "$submission" ]; then
    cat >>"$dir/postfix/master.cf" <<EOF
$submission inet  n       -       n       -       -       smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=inet:127.0.0.1:$auth
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
EOF
  fi
  chown -R postfix: "$dir/postfix-data"
}

wait_port() {
  local port=$1 what=$2 i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "mail.sh: $what did not listen on $port" >&2
  return 1
}

start_imap() {
  local dir=$1 imap
  read -r imap _ _ <"$dir/ports"
  # Dovecot keeps inherited descriptors open: give it none of ours.
  dovecot -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.out" 2>&1
  wait_port "$imap" Dovecot || { tail -n 20 "$dir/dovecot.log" >&2; exit 1; }
}

stop_imap() {
  local dir=$1 pids i pid alive
  [ -f "$dir/dovecot.conf" ] || return 0
  pids=$(cat "$dir/dovecot-run/master.pid" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    pids="$pids $(pgrep -P "$pids" | tr '\n' ' ' || true)"
  fi
  doveadm -c "$dir/dovecot.conf" stop </dev/null >/dev/null 2>&1 || true
  # Stopped means the master and every process it ran (the IMAP sessions too) are gone, not
  # just its pid file: on a loaded machine a shutdown takes seconds, and starting a second
  # Dovecot on the same mailboxes meanwhile would be another test than the one asked for.
  for i in $(seq 1 300); do
    alive=
    for pid in $pids; do
      # A zombie is gone too (nobody may reap it in a container).
      if kill -0 "$pid" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null; then
        alive=$pid
      fi
    done
    [ -n "$alive" ] || return 0
    sleep 0.1
  done
  echo "mail.sh: Dovecot ($pids) still running 30 s after doveadm stop; killing it" >&2
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

start() {
  local dir=$1 imap=$2 smtp=$3 lmtp=$4 imaps=${5:-0} smtps=${6:-} submission=${7:-} auth=${8:-0}
  local introspection=${9:-}
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  write_config "$dir" "$imap" "$smtp" "$lmtp" "$imaps" "$smtps" "$submission" "$auth" \
    "$introspection"
  start_imap "$dir"
  postfix -c "$dir/postfix" start </dev/null >>"$dir/postfix.out" 2>&1 \
    || { cat "$dir/postfix.out" "$dir/postfix.log" >&2 2>/dev/null; exit 1; }
  wait_port "$smtp" Postfix || { tail -n 20 "$dir/postfix.log" >&2; exit 1; }
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/postfix/main.cf" ] && postfix -c "$dir/postfix" stop </dev/null >/dev/null 2>&1 || true
  stop_imap "$dir"
}

cmd=${1:-}; shift || true
case "$cmd" in
  install) install ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  start-imap) start_imap "$(cd "$1" && pwd)" ;;
  stop-imap) stop_imap "$(cd "$1" && pwd)" ;;
  uidvalidity) doveadm -c "$(cd "$1" && pwd)/dovecot.conf" mailbox update -u "$2" --uid-validity "$3" INBOX ;;
  *) echo "usage: $0 install | start DIR IMAP SMTP LMTP | stop DIR | start-imap DIR | stop-imap DIR" >&2; exit 2 ;;
esac
