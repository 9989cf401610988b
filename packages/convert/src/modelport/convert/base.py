"""The Converter base, from modelport.runtime (where a backend without the convert package finds it too)."""

from modelport.runtime.converter import MADE as MADE
from modelport.runtime.converter import Converter as Converter
from modelport.runtime.converter import Made as Made
from modelport.runtime.converter import Make as Make
from modelport.runtime.converter import RuntimeFactory as RuntimeFactory
