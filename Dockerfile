# One image for the three services (and the homecare CLI); the command picks the service.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY schemas ./schemas
COPY services ./services
COPY deploy/reference ./deploy/reference
RUN uv sync --frozen --no-dev
USER nobody
CMD ["python", "-m", "services.brokerage"]
