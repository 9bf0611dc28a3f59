# The c360 image: the gateway, the vendor sandboxes and the development issuer
# (docker-compose.yml runs each from it). Runs as user c360 (uid 10001), which
# owns the audit trail's directories -- mount volumes there.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY connectors connectors
COPY schema schema
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent c360 \
    && install -d -o c360 -g c360 -m 0750 /var/log/c360 /var/lib/c360

USER c360
# /app stays read-only to c360: the audit trail's path is set in the config
# (c360 serve refuses a file sink without one), never the working directory.
EXPOSE 8000
ENTRYPOINT ["c360"]
