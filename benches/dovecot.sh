#!/usr/bin/env bash
# Starts Debian's Dovecot POP3 on 127.0.0.1:PORT with users u0..u7@bench.test
# (password pw), each holding one 1 KB message, for benches/compare.sh.
# Usage: dovecot.sh DIR PORT
set -euo pipefail
dir=$1; port=$2
mkdir -p "$dir/run" "$dir/home"
# Dovecot's auth and mail processes run as other users: they must reach these files.
chmod 755 "$(dirname "$dir")" "$dir"
: > "$dir/users"
for i in 0 1 2 3 4 5 6 7; do
  echo "u$i@bench.test:{PLAIN}pw" >> "$dir/users"
  mkdir -p "$dir/mail/u$i@bench.test/"{new,cur,tmp}
  printf 'Subject: pop bench\r\n\r\n%s\r\n' "$(head -c 1000 /dev/zero | tr '\0' x)" > "$dir/mail/u$i@bench.test/new/1.bench"
done
chown -R mail:mail "$dir/mail" "$dir/home"
cat > "$dir/dovecot.conf" <<CONF
base_dir = $dir/run
log_path = $dir/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:$dir/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$dir/home/%u
}
service pop3-login {
  inet_listener pop3 {
    port = $port
  }
}
CONF
exec /usr/sbin/dovecot -c "$dir/dovecot.conf" -F
