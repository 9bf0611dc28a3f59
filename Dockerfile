FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY connectors connectors
COPY schema schema
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["c360"]
