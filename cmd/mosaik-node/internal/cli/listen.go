package cli

import (
	"net"

	ma "github.com/multiformats/go-multiaddr"
)

// checkPortFree fails, naming the address, when a --listen multiaddr
// names an explicit TCP or UDP port that another socket holds. go-libp2p
// listens on TCP with SO_REUSEPORT, so without this check a second node
// on a taken port would share it with the first and each would get a
// random half of the inbound connections. The probe binds without
// SO_REUSEPORT, which Linux refuses while any socket holds the port,
// reuse or not. Port 0 needs no check: the kernel picks a free one.
// A port taken between the probe and the host's listen is not caught;
// this is a check for operators' mistakes, not a lock.
func checkPortFree(a ma.Multiaddr) error {
	var ip string
	for _, p := range []int{ma.P_IP4, ma.P_IP6} {
		if v, err := a.ValueForProtocol(p); err == nil {
			ip = v
		}
	}
	if ip == "" {
		return nil // a DNS name or a non-IP address: libp2p reports its errors
	}
	for _, proto := range []struct {
		code int
		net  string
	}{{ma.P_TCP, "tcp"}, {ma.P_UDP, "udp"}} {
		port, err := a.ValueForProtocol(proto.code)
		if err != nil || port == "0" {
			continue
		}
		hostPort := net.JoinHostPort(ip, port)
		if proto.net == "tcp" {
			l, err := net.Listen("tcp", hostPort)
			if err != nil {
				return usagef("--listen %s: %s port %s is not available: %v", a, proto.net, hostPort, err)
			}
			_ = l.Close()
			continue
		}
		c, err := net.ListenPacket("udp", hostPort)
		if err != nil {
			return usagef("--listen %s: %s port %s is not available: %v", a, proto.net, hostPort, err)
		}
		_ = c.Close()
	}
	return nil
}
