from services.brokerage.app import build
from services.runtime.service import serve

serve(build)
