-- Argo CD health check for webhooks.openplatform.dev/WebhookEvent.
-- Self-contained on purpose: Argo CD loads each kind's script on its own (argocd-cm).
-- Healthy: Delivered=True (every matched delivery succeeded, or nothing matched).
-- Degraded: Stalled=True (a delivery failed for good and nothing is still open).
-- Progressing: not yet seen by the operator, or deliveries still open (Reconciling=True).
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}

local function condition(conditions, type_)
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local stalled = condition(obj.status.conditions, "Stalled")
local reconciling = condition(obj.status.conditions, "Reconciling")
local delivered = condition(obj.status.conditions, "Delivered")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or "a delivery failed"
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.message or "delivering"
  return hs
end
if delivered ~= nil and delivered.status == "True" then
  hs.status = "Healthy"
  hs.message = delivered.message or ""
  return hs
end
if delivered ~= nil then
  hs.message = delivered.message or ""
end
return hs
