"""modelport.common: what every environment shares.

Only light dependencies (numpy, pillow, pydantic, click, rich): this package is
installed in every toolchain env and must never import a toolchain.
"""

__version__ = "0.1.0"
