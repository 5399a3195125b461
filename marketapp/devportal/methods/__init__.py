"""REST methods; importing this package registers all of them in ``registry.METHODS``."""

from marketapp.devportal.methods import bizproc as bizproc
from marketapp.devportal.methods import core as core
from marketapp.devportal.methods import crm as crm
from marketapp.devportal.methods import misc as misc
