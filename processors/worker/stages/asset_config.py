"""What the stages need to know of an asset from the config, resolved once per asset."""

from __future__ import annotations

from plantstream.core import reporting
from plantstream.core.config import AlertRule, Settings
from processors import alert_rules, oee


class AssetConfig:
    """An asset's OEE profile (None: no machine_state tag), the alert rules that match it, and how long
    its data may be silent before it counts as missing (plantstream.core.reporting)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._profiles: dict[str, oee.AssetProfile | None] = {}
        self._rules: dict[str, list[AlertRule]] = {}
        self._silence: dict[str, int | None] = {}
        self._interval: dict[str, float | None] = {}
        self._alarms: dict[str, dict[str, AlertRule]] = {}
        self.allowed_lateness_us = int(settings.pipeline.windows.allowed_lateness_s * 1_000_000)

    def silence_us(self, asset: str) -> int | None:
        if asset not in self._silence:
            self._silence[asset] = reporting.silence_us(self.settings, asset)
        return self._silence[asset]

    def expected_interval_s(self, asset: str) -> float | None:
        if asset not in self._interval:
            self._interval[asset] = reporting.expected_interval_s(self.settings, asset)
        return self._interval[asset]

    def profile(self, asset: str) -> oee.AssetProfile | None:
        if asset not in self._profiles:
            self._profiles[asset] = oee.profile_for(self.settings, asset)
        return self._profiles[asset]

    def alarms(self, asset: str) -> dict[str, AlertRule]:
        """The asset's alarms: its alert rules by name."""
        got = self._alarms.get(asset)
        if got is None:
            got = self._alarms[asset] = {r.name: r for r in self.rules(asset)}
        return got

    def known(self, asset: str) -> bool:
        """Whether the plant config declares the asset."""
        try:
            self.settings.asset(asset)
        except KeyError:
            return False
        return True

    def rules(self, asset: str) -> list[AlertRule]:
        rules = self._rules.get(asset)
        if rules is None:
            rules = self._rules[asset] = alert_rules.rules_for(self.settings.pipeline.alerts, asset)
        return rules
