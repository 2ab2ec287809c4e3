//go:build !race

package test

// maliciousRaceBuild: see malicious_race_test.go.
const maliciousRaceBuild = false
