from services.reporting.app import build
from services.runtime.service import serve

serve(build)
