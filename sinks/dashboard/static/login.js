// the sign-in form: POST /api/login as JSON, then the dashboard
"use strict";
document.querySelector("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.querySelector("#error");
  out.textContent = "";
  const body = JSON.stringify({ name: document.querySelector("#name").value, password: document.querySelector("#password").value });
  const r = await fetch("api/login", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body });
  if (r.ok) { location.href = "./"; return; }
  const msg = await r.json().catch(() => ({}));
  out.textContent = msg.error || `sign-in failed (HTTP ${r.status})`;
});
