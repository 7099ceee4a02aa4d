"""gunicorn target: `gunicorn -c panda_server/gunicorn_conf.py panda_server.wsgi:application`."""

import atexit

from panda_server.app import create_app
from panda_server.taskbuffer import sitedata

application = create_app()
# a server process's last pilot counts (getJob/updateJob) reach the DB when it stops
atexit.register(sitedata.flush, application.config["PANDA_ENGINE"])
