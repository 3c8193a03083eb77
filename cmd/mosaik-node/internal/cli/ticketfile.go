package cli

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mosaik-go/mosaik/catalog"
)

// ticketFile is the on-disk form of a ticket (--ticket FILE): JSON with the
// class as 64 hex characters and the data as base64.
type ticketFile struct {
	Format string `json:"format"` // "libp2p-signed" or "jwt"
	Class  string `json:"class"`
	Data   []byte `json:"data"`
}

const maxTicketFile = 64 << 10

func writeTicket(path string, t catalog.Ticket) error {
	b, err := json.MarshalIndent(ticketFile{Format: "libp2p-signed", Class: t.Class.String(), Data: t.Data}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

func readTicket(path string) (catalog.Ticket, error) {
	st, err := os.Stat(path)
	if err != nil {
		return catalog.Ticket{}, fmt.Errorf("ticket %s: %w", path, err)
	}
	if st.Size() > maxTicketFile {
		return catalog.Ticket{}, fmt.Errorf("ticket %s: larger than %d bytes", path, maxTicketFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return catalog.Ticket{}, fmt.Errorf("ticket %s: %w", path, err)
	}
	var tf ticketFile
	if err := json.Unmarshal(b, &tf); err != nil {
		return catalog.Ticket{}, fmt.Errorf("ticket %s: not a ticket file: %w", path, err)
	}
	if len(tf.Class) != 64 || len(tf.Data) == 0 {
		return catalog.Ticket{}, fmt.Errorf("ticket %s: needs a 64-hex class and data", path)
	}
	return catalog.Ticket{Class: catalog.IDFromString(tf.Class), Data: tf.Data}, nil
}
