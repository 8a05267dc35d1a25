"""What the stages need to know of an asset from the config, resolved once per asset."""

from __future__ import annotations

from plantstream.core.config import AlertRule, Settings
from processors import alert_rules, oee


class AssetConfig:
    """An asset's OEE profile (None: no machine_state tag) and the alert rules that match it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._profiles: dict[str, oee.AssetProfile | None] = {}
        self._rules: dict[str, list[AlertRule]] = {}

    def profile(self, asset: str) -> oee.AssetProfile | None:
        if asset not in self._profiles:
            self._profiles[asset] = oee.profile_for(self.settings, asset)
        return self._profiles[asset]

    def rules(self, asset: str) -> list[AlertRule]:
        rules = self._rules.get(asset)
        if rules is None:
            rules = self._rules[asset] = alert_rules.rules_for(self.settings.pipeline.alerts, asset)
        return rules
