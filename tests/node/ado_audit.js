// The seed's Azure DevOps audit functions (seed 002), verbatim, run against tokenwarden.
// Only the base URL differs: an axios interceptor sends auditservice.dev.azure.com to the
// server under test (TW_BASE_URL); the functions themselves are unchanged.
// Usage: TW_BASE_URL=http://127.0.0.1:PORT TW_TOKEN=... node ado_audit.js ORG START END KNOWN_IPS_JSON
"use strict";
var axios = require("axios");

var ADO = "https://auditservice.dev.azure.com/";
axios.interceptors.request.use(function (config) {
  if (config.url.indexOf(ADO) === 0) {
    config.url = process.env.TW_BASE_URL + "/" + config.url.slice(ADO.length);
  }
  return config;
});

// ---- from the seed, unchanged ----
function getPatAuditLogs(orgName, authToken, startDate, endDate) {
  var url = "https://auditservice.dev.azure.com/" + orgName +
    "/_apis/audit/auditlog?startTime=" + startDate.toISOString() +
    "&endTime=" + endDate.toISOString() +
    "&api-version=7.1-preview.1";

  return axios.get(url, {
    headers: {
      "Authorization": "Basic " + Buffer.from(":" + authToken).toString("base64")
    }
  }).then(function(response) {
    var entries = response.data.decoratedAuditLogEntries || [];
    return entries.filter(function(entry) {
      return entry.actionId === "Token.PatCreateEvent" ||
             entry.actionId === "Token.PatRevokeEvent" ||
             entry.actionId === "Token.PatExpiredEvent" ||
             entry.actionId === "Token.PatSystemRevokeEvent";
    });
  });
}

function analyzeTokenUsage(auditEntries, knownIPs) {
  var alerts = [];

  auditEntries.forEach(function(entry) {
    // Flag usage from unknown IPs
    if (entry.ipAddress && knownIPs.indexOf(entry.ipAddress) === -1) {
      alerts.push({
        level: "high",
        message: "PAT used from unknown IP: " + entry.ipAddress,
        tokenId: entry.data ? entry.data.TokenId : "unknown",
        timestamp: entry.timestamp
      });
    }

    // Flag after-hours usage (outside 6 AM - 10 PM UTC)
    var hour = new Date(entry.timestamp).getUTCHours();
    if (hour < 6 || hour > 22) {
      alerts.push({
        level: "medium",
        message: "PAT used outside normal hours: " + hour + ":00 UTC",
        tokenId: entry.data ? entry.data.TokenId : "unknown",
        timestamp: entry.timestamp
      });
    }
  });

  return alerts;
}
// ---- end of the seed's code ----

var args = process.argv.slice(2);
getPatAuditLogs(args[0], process.env.TW_TOKEN, new Date(args[1]), new Date(args[2]))
  .then(function (entries) {
    var alerts = analyzeTokenUsage(entries, JSON.parse(args[3] || "[]"));
    process.stdout.write(JSON.stringify({ entries: entries, alerts: alerts }) + "\n");
  })
  .catch(function (err) {
    var status = err.response ? err.response.status : "no response";
    process.stderr.write("request failed: " + status + " " + err.message + "\n");
    process.exit(1);
  });
