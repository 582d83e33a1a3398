# nnplay: CPU JAX by default. Build: docker build -t nnplay .   Run: docker run -p 8000:8000 nnplay
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY core core
COPY app app
RUN pip install --upgrade pip setuptools && pip install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 nnplay
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/nnplay
COPY --chown=nnplay:nnplay core core
COPY --chown=nnplay:nnplay app app
COPY --chown=nnplay:nnplay templates templates
COPY --chown=nnplay:nnplay static static
ENV PATH=/opt/venv/bin:$PATH NNPLAY_HOST=0.0.0.0 NNPLAY_PORT=8000 NNPLAY_JAX_CACHE=/srv/nnplay/.jax-cache \
    PYTHONUNBUFFERED=1
USER nnplay
# Warm the persistent compilation cache at build time so containers start fast.
RUN python -c "from core.engine import Engine, enable_compilation_cache; enable_compilation_cache(); Engine().warmup(batched_sizes=(8, 32, 64))"
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status==200 else 1)"
CMD ["nnplay", "serve"]
