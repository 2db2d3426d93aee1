-- Argo CD health check for webhooks.openplatform.dev/WebhookSubscription.
-- Self-contained on purpose: Argo CD loads each kind's script on its own (argocd-cm).
-- Healthy: Ready=True. Suspended: paused. Degraded: Stalled=True (only a person can fix it:
-- InvalidSpec, InvalidSecret, TLSConfigInvalid, EgressDenied, EndpointDisabled).
-- Progressing: not yet seen by the operator, a newer generation not yet observed, or
-- Reconciling=True (e.g. SecretNotFound: the Secret may still be applied).
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
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(obj.status.conditions, "Stalled")
local reconciling = condition(obj.status.conditions, "Reconciling")
local ready = condition(obj.status.conditions, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.reason .. ": " .. (reconciling.message or "")
  return hs
end
if ready ~= nil and ready.status == "False" and ready.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = ready.message or "paused"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return hs
