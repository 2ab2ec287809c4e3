//go:build race

package test

// maliciousRaceBuild is set under the race detector, which slows the in-process cluster so much
// that honest duties miss their 2-second slots: TestCluster_MaliciousLeaderPerDutyType then
// only logs the checks that depend on timing (see timingErrorf).
const maliciousRaceBuild = true
