package graphsim

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// route is a Graph request path, parsed. When the path is not a
// recoverPasscode route or one of its keys is malformed, errResp says how
// Graph answers.
type route struct {
	form          string
	deviceID      string
	userID        string
	detectedAppID string
	errResp       *graphResponse
}

// parseRoute parses an escaped request path into one of the three
// recoverPasscode forms. Segments are unescaped one by one, so an escaped
// '/' is a malformed key (400), never another route; segment names match
// case-insensitively, as Graph's do.
func parseRoute(escaped string) route {
	segs, ok := splitEscapedPath(escaped)
	if !ok {
		return route{errResp: badRequest("The request URI holds a segment that is not a valid key: an escaped '/' or a malformed escape.")}
	}
	if len(segs) == 0 || (!strings.EqualFold(segs[0], "v1.0") && !strings.EqualFold(segs[0], "beta")) {
		return route{errResp: notFound("Invalid version or resource path.")}
	}
	var rt route
	switch p := segs[1:]; {
	case matchSegs(p, "deviceManagement", "managedDevices", "*", "recoverPasscode"):
		rt = route{form: FormManagedDevice, deviceID: p[2]}
	case matchSegs(p, "users", "*", "managedDevices", "*", "recoverPasscode"):
		rt = route{form: FormUser, userID: p[1], deviceID: p[3]}
	case matchSegs(p, "deviceManagement", "detectedApps", "*", "managedDevices", "*", "recoverPasscode"):
		rt = route{form: FormDetectedApp, detectedAppID: p[2], deviceID: p[4]}
	default:
		return route{errResp: notFound(fmt.Sprintf("Resource not found for the segment '%s'.", lastSegment(segs)))}
	}
	rt.errResp = rt.validate()
	return rt
}

// validate checks the route's keys as Graph does: a managed device ID is a
// GUID, a user is a GUID or a UPN, a detected app ID is a plain token.
func (rt route) validate() *graphResponse {
	if !wire.IsGUID(rt.deviceID) {
		return badRequest(fmt.Sprintf("Invalid key for managedDevices: '%s' is not a valid GUID.", rt.deviceID))
	}
	if rt.form == FormUser {
		if strings.HasPrefix(rt.userID, "$") {
			return badRequest("A user principal name starting with '$' must be addressed as users('{upn}').")
		}
		if !wire.IsGUID(rt.userID) && !isUPN(rt.userID) {
			return badRequest(fmt.Sprintf("Invalid key for users: '%s' is neither an object ID nor a user principal name.", rt.userID))
		}
	}
	if rt.form == FormDetectedApp && !validDetectedAppID(rt.detectedAppID) {
		return badRequest("Invalid key for detectedApps.")
	}
	return nil
}

// validDetectedAppID accepts Intune's detected app IDs (opaque printable
// strings, in practice base64-like hashes) and rejects whitespace, control
// characters and anything over 256 bytes.
func validDetectedAppID(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func lastSegment(segs []string) string {
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i] != "" {
			return segs[i]
		}
	}
	return ""
}

func badRequest(msg string) *graphResponse {
	return &graphResponse{status: http.StatusBadRequest, code: "BadRequest", message: msg}
}

func notFound(msg string) *graphResponse {
	return &graphResponse{status: http.StatusNotFound, code: "ResourceNotFound", message: msg}
}
