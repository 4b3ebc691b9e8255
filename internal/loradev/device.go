// Package loradev is simulated LoRaWAN end devices: they build join-requests
// and rejoin-requests with their own root keys and verify join-accepts,
// deriving the session keys. The simulator (internal/sim, cmd/conduit-sim)
// and tests (through internal/jstest) use it; it links no test package.
package loradev

import (
	"crypto/aes"
	"errors"
	"fmt"

	"github.com/brocaar/lorawan"
)

// Device is a simulated end device with its root keys.
type Device struct {
	DevEUI  lorawan.EUI64
	JoinEUI lorawan.EUI64
	NwkKey  lorawan.AES128Key // LoRaWAN 1.0.x: the AppKey
	AppKey  lorawan.AES128Key // LoRaWAN 1.1 only
	MAC11   bool              // LoRaWAN 1.1 device (OptNeg)
}

// SessionKeys are the keys a device derives from a join-accept.
type SessionKeys struct {
	FNwkSIntKey lorawan.AES128Key // = NwkSKey for 1.0.x
	SNwkSIntKey lorawan.AES128Key
	NwkSEncKey  lorawan.AES128Key
	AppSKey     lorawan.AES128Key
	DevAddr     lorawan.DevAddr
	NetID       lorawan.NetID
	JoinNonce   lorawan.JoinNonce
}

// JoinRequest returns the join-request PHYPayload with a correct MIC.
func (d Device) JoinRequest(devNonce uint16) []byte {
	phy := lorawan.PHYPayload{
		MHDR: lorawan.MHDR{MType: lorawan.JoinRequest, Major: lorawan.LoRaWANR1},
		MACPayload: &lorawan.JoinRequestPayload{
			JoinEUI:  d.JoinEUI,
			DevEUI:   d.DevEUI,
			DevNonce: lorawan.DevNonce(devNonce),
		},
	}
	if err := phy.SetUplinkJoinMIC(d.NwkKey); err != nil {
		panic(err)
	}
	b, err := phy.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// VerifyJoinAccept decrypts a join-accept as the device would, verifies its
// MIC and derives the session keys.
func (d Device) VerifyJoinAccept(b []byte, devNonce uint16) (SessionKeys, error) {
	var phy lorawan.PHYPayload
	if err := phy.UnmarshalBinary(b); err != nil {
		return SessionKeys{}, fmt.Errorf("device: unmarshal join-accept: %w", err)
	}
	if err := phy.DecryptJoinAcceptPayload(d.NwkKey); err != nil {
		return SessionKeys{}, fmt.Errorf("device: decrypt join-accept: %w", err)
	}
	ja, ok := phy.MACPayload.(*lorawan.JoinAcceptPayload)
	if !ok {
		return SessionKeys{}, errors.New("device: not a join-accept")
	}
	dn := lorawan.DevNonce(devNonce)
	micKey := d.NwkKey
	if d.MAC11 {
		if !ja.DLSettings.OptNeg {
			return SessionKeys{}, errors.New("device: 1.1 device got a join-accept without OptNeg")
		}
		micKey = jsKey(0x06, d.DevEUI, d.NwkKey)
	}
	ok, err := phy.ValidateDownlinkJoinMIC(lorawan.JoinRequestType, d.JoinEUI, dn, micKey)
	if err != nil {
		return SessionKeys{}, fmt.Errorf("device: validate MIC: %w", err)
	}
	if !ok {
		return SessionKeys{}, errors.New("device: join-accept MIC invalid")
	}
	sk := SessionKeys{DevAddr: ja.DevAddr, NetID: ja.HomeNetID, JoinNonce: ja.JoinNonce}
	if d.MAC11 {
		sk.FNwkSIntKey = sKey11(0x01, d.NwkKey, ja.JoinNonce, d.JoinEUI, dn)
		sk.AppSKey = sKey11(0x02, d.AppKey, ja.JoinNonce, d.JoinEUI, dn)
		sk.SNwkSIntKey = sKey11(0x03, d.NwkKey, ja.JoinNonce, d.JoinEUI, dn)
		sk.NwkSEncKey = sKey11(0x04, d.NwkKey, ja.JoinNonce, d.JoinEUI, dn)
	} else {
		sk.FNwkSIntKey = sKey10(0x01, d.NwkKey, ja.JoinNonce, ja.HomeNetID, dn)
		sk.AppSKey = sKey10(0x02, d.NwkKey, ja.JoinNonce, ja.HomeNetID, dn)
		sk.SNwkSIntKey, sk.NwkSEncKey = sk.FNwkSIntKey, sk.FNwkSIntKey
	}
	return sk, nil
}

func mustBin(m interface{ MarshalBinary() ([]byte, error) }) []byte {
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func aesBlock(key lorawan.AES128Key, in []byte) lorawan.AES128Key {
	c, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	var out lorawan.AES128Key
	c.Encrypt(out[:], in)
	return out
}

func sKey10(typ byte, key lorawan.AES128Key, jn lorawan.JoinNonce, netID lorawan.NetID, dn lorawan.DevNonce) lorawan.AES128Key {
	b := make([]byte, 16)
	b[0] = typ
	copy(b[1:4], mustBin(jn))
	copy(b[4:7], mustBin(netID))
	copy(b[7:9], mustBin(dn))
	return aesBlock(key, b)
}

func sKey11(typ byte, key lorawan.AES128Key, jn lorawan.JoinNonce, joinEUI lorawan.EUI64, dn lorawan.DevNonce) lorawan.AES128Key {
	b := make([]byte, 16)
	b[0] = typ
	copy(b[1:4], mustBin(jn))
	copy(b[4:12], mustBin(joinEUI))
	copy(b[12:14], mustBin(dn))
	return aesBlock(key, b)
}

func jsKey(typ byte, devEUI lorawan.EUI64, key lorawan.AES128Key) lorawan.AES128Key {
	b := make([]byte, 16)
	b[0] = typ
	copy(b[1:9], mustBin(devEUI))
	return aesBlock(key, b)
}

// RejoinRequest returns a rejoin-request of type 0, 1 or 2 (MIC with
// JSIntKey; brocaar's handler does not verify it).
func (d Device) RejoinRequest(typ int, netID lorawan.NetID, rjCount uint16) []byte {
	phy := lorawan.PHYPayload{MHDR: lorawan.MHDR{MType: lorawan.RejoinRequest, Major: lorawan.LoRaWANR1}}
	if typ == 1 {
		phy.MACPayload = &lorawan.RejoinRequestType1Payload{RejoinType: lorawan.RejoinRequestType1, JoinEUI: d.JoinEUI, DevEUI: d.DevEUI, RJCount1: rjCount}
	} else {
		phy.MACPayload = &lorawan.RejoinRequestType02Payload{RejoinType: lorawan.JoinType(typ), NetID: netID, DevEUI: d.DevEUI, RJCount0: rjCount}
	}
	if err := phy.SetUplinkJoinMIC(jsKey(0x06, d.DevEUI, d.NwkKey)); err != nil {
		panic(err)
	}
	b, err := phy.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// VerifyRejoinAccept decrypts (JSEncKey) and verifies (JSIntKey) the
// join-accept answering a rejoin-request of type typ of a LoRaWAN 1.1 device.
func (d Device) VerifyRejoinAccept(b []byte, typ int, rjCount uint16) error {
	var phy lorawan.PHYPayload
	if err := phy.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("device: unmarshal join-accept: %w", err)
	}
	if err := phy.DecryptJoinAcceptPayload(jsKey(0x05, d.DevEUI, d.NwkKey)); err != nil {
		return fmt.Errorf("device: decrypt join-accept: %w", err)
	}
	ok, err := phy.ValidateDownlinkJoinMIC(lorawan.JoinType(typ), d.JoinEUI, lorawan.DevNonce(rjCount), jsKey(0x06, d.DevEUI, d.NwkKey))
	if err != nil {
		return fmt.Errorf("device: validate MIC: %w", err)
	}
	if !ok {
		return errors.New("device: rejoin join-accept MIC invalid")
	}
	return nil
}
