# aimsguard gateway: a slim image that runs as a non-root user.
#   docker build -t aimsguard .
#   docker run -p 8080:8080 -v $PWD/configs:/etc/aimsguard aimsguard
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIMSGUARD_EVENT_DIR=/var/lib/aimsguard/events \
    AIMSGUARD_RECORDS_URL=sqlite:////var/lib/aimsguard/records.db

RUN groupadd --system --gid 10001 aimsguard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/aimsguard --create-home aimsguard

WORKDIR /opt/aimsguard
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY guardrails ./guardrails
COPY collectors ./collectors
RUN pip install --no-cache-dir . \
    && rm -rf /opt/aimsguard/build

COPY configs /etc/aimsguard

USER 10001:10001
WORKDIR /var/lib/aimsguard
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["aimsguard"]
CMD ["gateway", "--config", "/etc/aimsguard/aimsguard.yaml", "--host", "0.0.0.0", "--port", "8080"]
