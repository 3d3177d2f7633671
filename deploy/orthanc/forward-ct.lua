-- Auto-routing for ivcontrast: once a CT series is stable (no new instance for StableAge
-- seconds), Orthanc sends it to the "ivcontrast" modality through its own REST route
-- /modalities/ivcontrast/store, as an asynchronous job (see /jobs for its progress).
--
-- Series that ivcontrast itself sent back (corrected copies, whose calling AE is the
-- modality's AE title) are not forwarded again: they would only be classified twice.

local IVCONTRAST = 'ivcontrast'  -- the modality's name in DicomModalities

function OnStableSeries(seriesId, tags, metadata)
  if tags['Modality'] ~= 'CT' then
    return
  end
  local series = ParseJson(RestApiGet('/series/' .. seriesId))
  local first = series['Instances'][1]
  if first ~= nil then
    local node = ParseJson(RestApiGet('/modalities/' .. IVCONTRAST .. '/configuration'))
    local origin = RestApiGet('/instances/' .. first .. '/metadata/RemoteAET')
    if origin == node['AET'] then
      return
    end
  end
  local job = ParseJson(RestApiPost('/modalities/' .. IVCONTRAST .. '/store',
    DumpJson({ Resources = { seriesId }, Asynchronous = true }, true)))
  print('ivcontrast: forwarding CT series ' .. seriesId .. ' as job ' .. job['ID'])
end
