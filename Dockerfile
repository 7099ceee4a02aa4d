# PanDA-WMS server image: panda-server, panda-daemon, panda-ca, panda-schedconfig, panda-autopilot and gunicorn.
# One image for every service of docker-compose.yml; the command picks the role.
# No secrets are baked in: the PKI is minted at run time into a volume (service `pki`) and the
# database password comes from the environment.
#
#   docker build -t panda-wms:local .
#   docker run --rm panda-wms:local            # prints the help of each command

# --- build stage: a wheel of the project (no compiler needed: every dependency ships wheels) ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime stage ---
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels

COPY docker/healthcheck.py /usr/local/bin/panda-healthcheck
COPY docker/help.sh /usr/local/bin/panda-help

# Unprivileged user. The directories below are the mount points of the compose volumes: a new
# named volume copies the ownership of its mount point, so the user can write into it.
RUN chmod 0755 /usr/local/bin/panda-healthcheck /usr/local/bin/panda-help \
 && groupadd --system --gid 10001 panda \
 && useradd --system --uid 10001 --gid panda --home-dir /var/lib/panda --shell /usr/sbin/nologin panda \
 && mkdir -p /pki /var/lib/panda/cache /var/lib/panda/storage /var/lib/panda/autopilot \
 && chown -R panda:panda /pki /var/lib/panda

# Paths inside the container (the package defaults point into a source checkout's var/)
ENV PANDA_PKI_DIR=/pki \
    PANDA_CACHE_DIR=/var/lib/panda/cache \
    PANDA_STORAGE_ROOT=/var/lib/panda/storage \
    PANDA_AUTOPILOT_DIR=/var/lib/panda/autopilot

USER panda
WORKDIR /var/lib/panda
EXPOSE 25443 25080 25881
CMD ["panda-help"]
