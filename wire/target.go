package wire

import (
	"fmt"
	"net/url"
	"strings"
)

// The three forms of the recoverPasscode path, as returned by [Target.Form].
const (
	// FormManagedDevice is /deviceManagement/managedDevices/{managedDeviceId}/recoverPasscode.
	FormManagedDevice = "managedDevice"
	// FormUser is /users/{userId}/managedDevices/{managedDeviceId}/recoverPasscode.
	FormUser = "user"
	// FormDetectedApp is
	// /deviceManagement/detectedApps/{detectedAppId}/managedDevices/{managedDeviceId}/recoverPasscode.
	FormDetectedApp = "detectedApp"
)

// Bounds on identifiers. Entra ID limits a UPN to 64 characters before the @ and 48 after it.
const (
	maxUPNLocal      = 64
	maxUPNDomain     = 48
	maxDetectedAppID = 128
	maxShownValue    = 64
)

// Target names the device to act on; its fields mirror the job's JSON names.
//
// Only ManagedDeviceID is required. UserID and DetectedAppID choose the other two path
// forms and exclude each other. A Target is a plain value, safe to copy and share.
type Target struct {
	// TenantID is the Entra ID tenant the device belongs to; empty means the worker's
	// default tenant. When set it must be a GUID.
	TenantID string `json:"tenantId,omitempty"`
	// ManagedDeviceID is the Intune managed device ID, a GUID. Required.
	ManagedDeviceID string `json:"managedDeviceId"`
	// UserID, when set, addresses the device through its user: a GUID or a UPN.
	UserID string `json:"userId,omitempty"`
	// DetectedAppID, when set, addresses the device through a detected app.
	DetectedAppID string `json:"detectedAppId,omitempty"`
}

// FieldError reports one invalid identifier of a [Target]. Field is the JSON name
// ("managedDeviceId"), Value the offending input (truncated to 64 characters) and Reason
// what is wrong with it ("must be a GUID"), so a rejection can say exactly what to fix.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

// Error returns e.g. `invalid managedDeviceId "abc": must be a GUID`. The value is
// quoted with %q so control characters show as escapes.
func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

func fieldError(field, value, reason string) *FieldError {
	return &FieldError{Field: field, Value: Truncate(value, maxShownValue), Reason: reason}
}

// Validate checks every identifier of t and returns a *FieldError for the first one that
// is wrong: ManagedDeviceID must be a GUID; TenantID empty or a GUID; UserID a GUID or a
// UPN; DetectedAppID 1 to 128 characters of [A-Za-z0-9._-], neither "." nor "..";
// UserID and DetectedAppID must not both be set. Nothing that passes can change the
// path or the query of the request URL.
func (t Target) Validate() error {
	switch {
	case t.ManagedDeviceID == "":
		return fieldError("managedDeviceId", "", "is required")
	case !IsGUID(t.ManagedDeviceID):
		return fieldError("managedDeviceId", t.ManagedDeviceID, "must be a GUID")
	case t.TenantID != "" && !IsGUID(t.TenantID):
		return fieldError("tenantId", t.TenantID, "must be a GUID")
	case t.UserID != "" && t.DetectedAppID != "":
		return fieldError("detectedAppId", t.DetectedAppID, "must not be set together with userId")
	}
	if t.UserID != "" && !IsGUID(t.UserID) {
		if reason := upnProblem(t.UserID); reason != "" {
			return fieldError("userId", t.UserID, reason)
		}
	}
	if t.DetectedAppID != "" {
		if reason := detectedAppIDProblem(t.DetectedAppID); reason != "" {
			return fieldError("detectedAppId", t.DetectedAppID, reason)
		}
	}
	return nil
}

// Form names the path form t selects: [FormUser] when UserID is set, [FormDetectedApp]
// when DetectedAppID is set, [FormManagedDevice] otherwise. It does not validate.
func (t Target) Form() string {
	switch {
	case t.UserID != "":
		return FormUser
	case t.DetectedAppID != "":
		return FormDetectedApp
	default:
		return FormManagedDevice
	}
}

// Path validates t and returns the escaped path of its recoverPasscode action, relative
// to the Graph root, e.g. "/deviceManagement/managedDevices/{id}/recoverPasscode".
func (t Target) Path() (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	device := "/managedDevices/" + url.PathEscape(t.ManagedDeviceID) + "/recoverPasscode"
	switch t.Form() {
	case FormUser:
		return "/users/" + url.PathEscape(t.UserID) + device, nil
	case FormDetectedApp:
		return "/deviceManagement/detectedApps/" + url.PathEscape(t.DetectedAppID) + device, nil
	default:
		return "/deviceManagement" + device, nil
	}
}

// IsGUID reports whether s is a GUID in its canonical 8-4-4-4-12 hexadecimal form
// (either case, no braces).
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// upnProblem says what keeps s from being a UPN, or "" when it is one. A UPN here is
// local@domain in ASCII: the local part uses letters, digits and ' . - _ ! ^ ~ (Entra
// ID's set, less '#', which also marks a URL fragment), with no leading, trailing or
// doubled dot; the domain is two or more DNS labels.
func upnProblem(s string) string {
	at := strings.IndexByte(s, '@')
	if at < 0 || strings.Count(s, "@") != 1 {
		return "must be a GUID or a UPN (name@domain)"
	}
	local, domain := s[:at], s[at+1:]
	if local == "" || len(local) > maxUPNLocal {
		return fmt.Sprintf("the part before @ must be 1 to %d characters", maxUPNLocal)
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; !isAlnum(c) && !strings.ContainsRune("'.-_!^~", rune(c)) {
			return "the part before @ may hold only letters, digits and ' . - _ ! ^ ~"
		}
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "the part before @ must not start or end with a dot or hold two in a row"
	}
	if reason := domainProblem(domain); reason != "" {
		return reason
	}
	return ""
}

// domainProblem says what keeps s from being a UPN's domain, or "".
func domainProblem(s string) string {
	if s == "" || len(s) > maxUPNDomain {
		return fmt.Sprintf("the domain must be 1 to %d characters", maxUPNDomain)
	}
	if !IsDNSName(s, maxUPNDomain) {
		return "the domain must be two or more DNS labels (letters, digits, inner hyphens) joined by dots"
	}
	return ""
}

// IsDNSName reports whether s is at most maxLen characters of two or more DNS labels.
func IsDNSName(s string, maxLen int) bool {
	if len(s) > maxLen {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

// detectedAppIDProblem says what keeps s from being an acceptable detected app ID, or "".
func detectedAppIDProblem(s string) string {
	if len(s) > maxDetectedAppID {
		return fmt.Sprintf("must be at most %d characters", maxDetectedAppID)
	}
	if s == "." || s == ".." {
		return "must not be a dot segment"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return "may hold only letters, digits and . _ -"
		}
	}
	return ""
}
