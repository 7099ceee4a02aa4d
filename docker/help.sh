#!/bin/sh
# Default command of the image: say what it contains and how each role is started.
cat <<'TEXT'
PanDA-WMS image. Pick a role with the container command, e.g. (see docker-compose.yml):

  panda-ca init --dir /pki --host server --host localhost --host 127.0.0.1
  panda-server db upgrade && panda-schedconfig sync
  PANDA_LISTEN=https gunicorn -c python:panda_server.gunicorn_conf panda_server.wsgi:application
  PANDA_LISTEN=http  gunicorn -c python:panda_server.gunicorn_conf panda_server.wsgi:application
  panda-daemon setupper | panda-daemon adder

Settings come from PANDA_* variables (`panda-server settings` prints them).
TEXT
for cmd in panda-server panda-daemon panda-ca panda-schedconfig; do
    echo
    echo "\$ $cmd --help"
    "$cmd" --help
done
