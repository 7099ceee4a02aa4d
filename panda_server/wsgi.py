"""gunicorn target: `gunicorn -c panda_server/gunicorn_conf.py panda_server.wsgi:application`."""

from panda_server.app import create_app

application = create_app()
