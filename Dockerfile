# syntax=docker/dockerfile:1
# One image for every plantstream stage; the subcommand is the container's command:
#   docker run --rm plantstream:local check-config /app/config/plant.yaml
# docker-compose.yml builds it for the simulator, producer, processor, sink and topics services.

# --- build: wheels for the dependencies (cached while pyproject.toml is unchanged), then the project
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: no compilers, no dev extras, not root
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/plantstream-*.whl
RUN groupadd --system --gid 10001 plantstream \
 && useradd --system --uid 10001 --gid plantstream --create-home --home-dir /home/plantstream plantstream \
 && mkdir -p /app/config /data \
 && chown -R plantstream:plantstream /app /data
# /data: the state folder in compose (PLANTSTREAM_PIPELINE__STATE_DIR=/data); a named volume
# mounted there starts out owned by plantstream, so the non-root user can write to it
WORKDIR /app
USER plantstream
VOLUME ["/data"]
ENTRYPOINT ["plantstream"]
CMD ["--help"]
