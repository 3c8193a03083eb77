package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/mosaik-go/mosaik/catalog"
)

// The ticket formats of a ticket file.
const (
	formatSigned = "libp2p-signed"
	formatJWT    = "jwt"
)

// ticketFile is the on-disk form of a ticket (--ticket FILE): JSON with the
// class as 64 hex characters and the data as base64.
type ticketFile struct {
	Format string `json:"format"` // formatSigned or formatJWT
	Class  string `json:"class"`
	Data   []byte `json:"data"`
}

const maxTicketFile = 64 << 10

func writeTicket(path, format string, t catalog.Ticket) error {
	b, err := json.MarshalIndent(ticketFile{Format: format, Class: t.Class.String(), Data: t.Data}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

func readTicket(path string) (catalog.Ticket, error) {
	t, _, err := readTicketFile(path)
	return t, err
}

// readTicketFile reads a ticket file and returns the ticket and its format.
// A file without a known format field is judged by its data: a JWT is three
// base64url parts joined by dots, which a sealed libp2p envelope never is.
func readTicketFile(path string) (catalog.Ticket, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return catalog.Ticket{}, "", fmt.Errorf("ticket %s: %w", path, err)
	}
	if st.Size() > maxTicketFile {
		return catalog.Ticket{}, "", fmt.Errorf("ticket %s: larger than %d bytes", path, maxTicketFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return catalog.Ticket{}, "", fmt.Errorf("ticket %s: %w", path, err)
	}
	var tf ticketFile
	if err := json.Unmarshal(b, &tf); err != nil {
		return catalog.Ticket{}, "", fmt.Errorf("ticket %s: not a ticket file: %w", path, err)
	}
	if len(tf.Class) != 64 || len(tf.Data) == 0 {
		return catalog.Ticket{}, "", fmt.Errorf("ticket %s: needs a 64-hex class and data", path)
	}
	format := tf.Format
	if format != formatSigned && format != formatJWT {
		format = formatSigned
		if looksJWT(tf.Data) {
			format = formatJWT
		}
	}
	return catalog.Ticket{Class: catalog.IDFromString(tf.Class), Data: tf.Data}, format, nil
}

func looksJWT(b []byte) bool {
	if strings.Count(string(b), ".") != 2 {
		return false
	}
	for _, c := range b {
		if !(c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
