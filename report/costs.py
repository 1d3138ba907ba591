"""What a device-hour costs, for the report's cost columns: a TOML table the user edits.

    [prices]            # US dollars per device-hour
    cpu = 0.10          # any CPU machine (matched by the device, "cpu")
    "H200" = 3.50       # a GPU, matched by a word of its device name ("NVIDIA H200")

The shipped table (`default_prices.toml`) holds example prices to replace with your own; the report
says which table it used.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bertq.errors import SpecError


@dataclass(frozen=True)
class Prices:
    per_device_hour: dict[str, float]
    source: str

    def per_hour(self, device_name: str, device: str) -> float | None:
        """The price of the device: its name's best match (the longest key found in it), else its kind."""
        name = device_name.lower()
        matches = [key for key in self.per_device_hour if key.lower() in name and key.lower() != "cpu"]
        if matches:
            return self.per_device_hour[max(matches, key=len)]
        if device == "cpu" or "cpu" in name or "epyc" in name or "xeon" in name:
            return self.per_device_hour.get("cpu")
        return None


def load_prices(path: Path | None = None) -> Prices:
    """The `[prices]` table of a TOML file, or bertq's example prices."""
    text = path.read_text() if path else resources.files("bertq.report").joinpath("default_prices.toml").read_text()
    where = str(path) if path else "bertq's example prices (report/default_prices.toml)"
    try:
        table = tomllib.loads(text).get("prices")
    except tomllib.TOMLDecodeError as error:
        raise SpecError([f"{where}: not valid TOML ({error})"]) from error
    if not isinstance(table, dict) or not table:
        raise SpecError([f'{where}: needs a [prices] table, e.g. cpu = 0.10 and "H200" = 3.50 (USD per device-hour)'])
    bad = [key for key, value in table.items() if not isinstance(value, (int, float)) or value < 0]
    if bad:
        raise SpecError([f"{where}: prices must be numbers of dollars per hour, 0 or more ({', '.join(bad)} are not)"])
    return Prices({key: float(value) for key, value in table.items()}, where)
