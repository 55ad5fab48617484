-- Argo CD health check of a seqflow WorkflowRun (seqflow.io/WorkflowRun).
-- Install it in argocd-cm under resource.customizations.health.seqflow.io_WorkflowRun.
-- Healthy: Succeeded. Degraded: Failed or Cancelled. Suspended: Suspended. Progressing: the rest
-- (Pending, Running, Compensating).
local health = {status = "Progressing", message = "Waiting for seqflow to start the run"}
if obj.status == nil or obj.status.phase == nil then
  return health
end
local phase = obj.status.phase
local message = phase
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Succeeded" and condition.message ~= nil and condition.message ~= "" then
      message = condition.message
    end
  end
end
if phase == "Succeeded" then
  health.status = "Healthy"
elseif phase == "Failed" or phase == "Cancelled" then
  health.status = "Degraded"
elseif phase == "Suspended" then
  health.status = "Suspended"
end
health.message = message
return health
