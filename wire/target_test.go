package wire_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

const (
	deviceID = "0f8fad5b-d9cb-469f-a165-70867728950e"
	userGUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	tenantA  = "11111111-1111-1111-1111-111111111111"
)

func TestTargetValidate(t *testing.T) {
	tests := []struct {
		name   string
		target wire.Target
		field  string // "" when valid
	}{
		{"device only", wire.Target{ManagedDeviceID: deviceID}, ""},
		{"upper-case GUID", wire.Target{ManagedDeviceID: strings.ToUpper(deviceID)}, ""},
		{"tenant", wire.Target{TenantID: tenantA, ManagedDeviceID: deviceID}, ""},
		{"user GUID", wire.Target{ManagedDeviceID: deviceID, UserID: userGUID}, ""},
		{"user UPN", wire.Target{ManagedDeviceID: deviceID, UserID: "o'brien.j-x_y@contoso.onmicrosoft.com"}, ""},
		{"detected app", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "0000a1b2c3d4e5f6.app-1_x"}, ""},

		{"no device", wire.Target{}, "managedDeviceId"},
		{"device not GUID", wire.Target{ManagedDeviceID: "1234"}, "managedDeviceId"},
		{"device braces", wire.Target{ManagedDeviceID: "{" + deviceID + "}"}, "managedDeviceId"},
		{"device dot segments", wire.Target{ManagedDeviceID: "a/../b"}, "managedDeviceId"},
		{"device with query", wire.Target{ManagedDeviceID: deviceID + "?x=1"}, "managedDeviceId"},
		{"tenant not GUID", wire.Target{TenantID: "contoso.com", ManagedDeviceID: deviceID}, "tenantId"},
		{"user and app", wire.Target{ManagedDeviceID: deviceID, UserID: userGUID, DetectedAppID: "app"}, "detectedAppId"},
		{"user dot segments", wire.Target{ManagedDeviceID: deviceID, UserID: "a/../b@contoso.com"}, "userId"},
		{"user query", wire.Target{ManagedDeviceID: deviceID, UserID: "x?y@contoso.com"}, "userId"},
		{"user fragment", wire.Target{ManagedDeviceID: deviceID, UserID: "x#y@contoso.com"}, "userId"},
		{"user escaped slash", wire.Target{ManagedDeviceID: deviceID, UserID: "x%2Fy@contoso.com"}, "userId"},
		{"user backslash", wire.Target{ManagedDeviceID: deviceID, UserID: `x\y@contoso.com`}, "userId"},
		{"user division slash", wire.Target{ManagedDeviceID: deviceID, UserID: "x\u2215y@contoso.com"}, "userId"},
		{"user fullwidth slash", wire.Target{ManagedDeviceID: deviceID, UserID: "x\uff0fy@contoso.com"}, "userId"},
		{"user control char", wire.Target{ManagedDeviceID: deviceID, UserID: "x\x00y@contoso.com"}, "userId"},
		{"user newline", wire.Target{ManagedDeviceID: deviceID, UserID: "xy@contoso.com\n"}, "userId"},
		{"user space", wire.Target{ManagedDeviceID: deviceID, UserID: "x y@contoso.com"}, "userId"},
		{"user no domain", wire.Target{ManagedDeviceID: deviceID, UserID: "alice"}, "userId"},
		{"user two ats", wire.Target{ManagedDeviceID: deviceID, UserID: "a@b@contoso.com"}, "userId"},
		{"user single-label domain", wire.Target{ManagedDeviceID: deviceID, UserID: "a@localhost"}, "userId"},
		{"user domain slash", wire.Target{ManagedDeviceID: deviceID, UserID: "a@contoso.com/x"}, "userId"},
		{"user leading dot", wire.Target{ManagedDeviceID: deviceID, UserID: ".a@contoso.com"}, "userId"},
		{"user double dot", wire.Target{ManagedDeviceID: deviceID, UserID: "a..b@contoso.com"}, "userId"},
		{"user local too long", wire.Target{ManagedDeviceID: deviceID, UserID: strings.Repeat("a", 65) + "@contoso.com"}, "userId"},
		{"user domain too long", wire.Target{ManagedDeviceID: deviceID, UserID: "a@" + strings.Repeat("b", 46) + ".com"}, "userId"},
		{"user dollar", wire.Target{ManagedDeviceID: deviceID, UserID: "$ref@contoso.com"}, "userId"},
		{"app dot", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "."}, "detectedAppId"},
		{"app dot dot", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: ".."}, "detectedAppId"},
		{"app slash", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "a/../b"}, "detectedAppId"},
		{"app escaped slash", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "%2F"}, "detectedAppId"},
		{"app query", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "x?y"}, "detectedAppId"},
		{"app fragment", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "x#y"}, "detectedAppId"},
		{"app space", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "x y"}, "detectedAppId"},
		{"app unicode slash", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "x\u2215y"}, "detectedAppId"},
		{"app control char", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "x\ty"}, "detectedAppId"},
		{"app too long", wire.Target{ManagedDeviceID: deviceID, DetectedAppID: strings.Repeat("a", 129)}, "detectedAppId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.target.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *wire.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || fe.Reason == "" {
				t.Fatalf("Validate = %v, want a *FieldError for %s", err, tt.field)
			}
			if _, err := tt.target.Path(); !errors.As(err, &fe) {
				t.Fatalf("Path = %v, want the *FieldError too", err)
			}
		})
	}
}

func TestFieldErrorText(t *testing.T) {
	err := wire.Target{ManagedDeviceID: "bad\x00id\n" + strings.Repeat("x", 100)}.Validate()
	msg := err.Error()
	if !strings.HasPrefix(msg, `invalid managedDeviceId "bad\x00id\nxxx`) || !strings.HasSuffix(msg, `…": must be a GUID`) {
		t.Fatalf("error = %q, want the quoted, escaped, truncated value and the reason", msg)
	}
	if got := (wire.Target{}).Validate().Error(); got != "invalid managedDeviceId: is required" {
		t.Fatalf("error = %q", got)
	}
}

func TestTargetPathAndForm(t *testing.T) {
	tests := []struct {
		target    wire.Target
		form      string
		path      string
		unescaped string
	}{
		{wire.Target{ManagedDeviceID: deviceID}, wire.FormManagedDevice,
			"/deviceManagement/managedDevices/" + deviceID + "/recoverPasscode", ""},
		{wire.Target{ManagedDeviceID: deviceID, UserID: userGUID}, wire.FormUser,
			"/users/" + userGUID + "/managedDevices/" + deviceID + "/recoverPasscode", ""},
		{wire.Target{ManagedDeviceID: deviceID, UserID: "o'brien@contoso.com"}, wire.FormUser,
			"/users/o%27brien@contoso.com/managedDevices/" + deviceID + "/recoverPasscode",
			"/users/o'brien@contoso.com/managedDevices/" + deviceID + "/recoverPasscode"},
		{wire.Target{ManagedDeviceID: deviceID, DetectedAppID: "app.1"}, wire.FormDetectedApp,
			"/deviceManagement/detectedApps/app.1/managedDevices/" + deviceID + "/recoverPasscode", ""},
	}
	for _, tt := range tests {
		t.Run(tt.form, func(t *testing.T) {
			if got := tt.target.Form(); got != tt.form {
				t.Fatalf("Form = %q, want %q", got, tt.form)
			}
			path, err := tt.target.Path()
			if err != nil || path != tt.path {
				t.Fatalf("Path = %q, %v; want %q", path, err, tt.path)
			}
			u, err := url.Parse("https://graph.example" + path)
			if tt.unescaped == "" {
				tt.unescaped = tt.path
			}
			if err != nil || u.Path != tt.unescaped || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("parsed %q as path %q query %q fragment %q", path, u.Path, u.RawQuery, u.Fragment)
			}
		})
	}
}

// FuzzTargetPath checks that no input passing Validate can change the URL: the path
// keeps its shape, with no query, fragment, dot segment or extra segment.
func FuzzTargetPath(f *testing.F) {
	for _, s := range []string{"a/../b", "x?y", "x#y", "%2F", "..", ".", "x\u2215y", "x\uff0fy", "a@b.c", "o'b@c.d", "\x00"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, user, app string) {
		for _, tg := range []wire.Target{
			{ManagedDeviceID: deviceID, UserID: user},
			{ManagedDeviceID: deviceID, DetectedAppID: app},
		} {
			path, err := tg.Path()
			if err != nil {
				continue
			}
			u, err := url.Parse("https://graph.example/v1.0" + path)
			if err != nil {
				t.Fatalf("Path %q does not parse: %v", path, err)
			}
			segs := strings.Split(u.EscapedPath(), "/")
			want := map[string]int{wire.FormManagedDevice: 6, wire.FormUser: 7, wire.FormDetectedApp: 8}[tg.Form()]
			if u.RawQuery != "" || u.Fragment != "" || len(segs) != want || strings.Contains(path, "/./") || strings.Contains(path, "/../") {
				t.Fatalf("Target %+v gave path %q (%d segments)", tg, path, len(segs))
			}
		}
	})
}
