"""Stream processors: the Faust worker and the pure math it calls (windows, OEE, anomaly models, alert
rules). Imports only plantstream.core and schemas."""
