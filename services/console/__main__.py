from services.console.app import build
from services.runtime.service import serve

serve(build)
