-- Argo CD health check for porter-identity's ServiceIdentityConnection and PorterRoleSet.
-- Both follow kstatus: Ready always, Stalled / Reconciling only while true, observedGeneration.
-- Install: docs/argocd/argocd-cm.yaml sets resource.customizations.health.identity.porter.run_ServiceIdentityConnection
--          and ..._PorterRoleSet to this script (docs/gitops.md). For argocd-cm scripts Argo CD opens only the
--          base, table and package libraries and a reduced os: no string.* here.
local hs = { status = "Progressing", message = "Waiting for the porter-identity operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local function describe(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Stalled" and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(condition)
    return hs
  end
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      hs.status = "Healthy"
    end
    hs.message = describe(condition)
    return hs
  end
end
return hs
