package joinclient

// Header is the common BI header. SenderID and ReceiverID are strings because
// their type depends on the direction (NetID, JoinEUI or AS-ID), and so that a
// malformed answer header never makes decoding fail; the NSID fields are
// strings for the same reason.
type Header struct {
	ProtocolVersion ProtocolVersion `json:"ProtocolVersion"`
	SenderID        string          `json:"SenderID"`
	ReceiverID      string          `json:"ReceiverID"`
	TransactionID   TransactionID   `json:"TransactionID"`
	MessageType     MessageType     `json:"MessageType"`
	SenderNSID      string          `json:"SenderNSID,omitempty"`   // BI 1.1, NS→JS
	ReceiverNSID    string          `json:"ReceiverNSID,omitempty"` // BI 1.1, JS→NS
	SenderToken     string          `json:"SenderToken,omitempty"`
	ReceiverToken   string          `json:"ReceiverToken,omitempty"`
}

// Result is the Result member of every answer.
type Result struct {
	ResultCode  ResultCode `json:"ResultCode"`
	Description string     `json:"Description,omitempty"`
}

// JoinReq is a JoinReq (NS→JS).
type JoinReq struct {
	Header
	MACVersion MACVersion `json:"MACVersion"`
	PHYPayload HEXBytes   `json:"PHYPayload"`
	DevEUI     EUI64      `json:"DevEUI"`
	DevAddr    DevAddr    `json:"DevAddr"`
	DLSettings DLSettings `json:"DLSettings"`
	RxDelay    int        `json:"RxDelay"`
	CFList     HEXBytes   `json:"CFList,omitempty"`
}

// JoinAns is a JoinAns (JS→NS).
type JoinAns struct {
	Header
	Result       Result       `json:"Result"`
	PHYPayload   HEXBytes     `json:"PHYPayload,omitempty"`
	Lifetime     *uint32      `json:"Lifetime,omitempty"`
	NwkSKey      *KeyEnvelope `json:"NwkSKey,omitempty"`     // LoRaWAN 1.0.x
	FNwkSIntKey  *KeyEnvelope `json:"FNwkSIntKey,omitempty"` // LoRaWAN 1.1
	SNwkSIntKey  *KeyEnvelope `json:"SNwkSIntKey,omitempty"` // LoRaWAN 1.1
	NwkSEncKey   *KeyEnvelope `json:"NwkSEncKey,omitempty"`  // LoRaWAN 1.1
	AppSKey      *KeyEnvelope `json:"AppSKey,omitempty"`
	SessionKeyID HEXBytes     `json:"SessionKeyID,omitempty"`
}

// RejoinReq is a RejoinReq (NS→JS, LoRaWAN 1.1 rejoin); same fields as JoinReq.
type RejoinReq JoinReq

// RejoinAns is a RejoinAns (JS→NS); same fields as JoinAns.
type RejoinAns JoinAns

// AppSKeyReq is an AppSKeyReq (AS→JS). It never carries an NSID.
type AppSKeyReq struct {
	Header
	DevEUI       EUI64    `json:"DevEUI"`
	SessionKeyID HEXBytes `json:"SessionKeyID"`
}

// AppSKeyAns is an AppSKeyAns (JS→AS).
type AppSKeyAns struct {
	Header
	Result       Result       `json:"Result"`
	DevEUI       EUI64        `json:"DevEUI"`
	AppSKey      *KeyEnvelope `json:"AppSKey,omitempty"`
	SessionKeyID HEXBytes     `json:"SessionKeyID,omitempty"`
}

// HomeNSReq is a HomeNSReq (NS→JS).
type HomeNSReq struct {
	Header
	DevEUI EUI64 `json:"DevEUI"`
}

// HomeNSAns is a HomeNSAns (JS→NS). HNSID exists only in BI 1.1.
type HomeNSAns struct {
	Header
	Result Result   `json:"Result"`
	HNetID *NetID   `json:"HNetID,omitempty"`
	HNSID  OptEUI64 `json:"HNSID,omitzero"`
}

// answer is implemented by every answer message.
type answer interface {
	header() *Header
	result() Result
	// complete checks a Success answer for the fields it must carry.
	complete(req requestInfo) error
}

func (a *JoinAns) header() *Header    { return &a.Header }
func (a *JoinAns) result() Result     { return a.Result }
func (a *RejoinAns) header() *Header  { return &a.Header }
func (a *RejoinAns) result() Result   { return a.Result }
func (a *AppSKeyAns) header() *Header { return &a.Header }
func (a *AppSKeyAns) result() Result  { return a.Result }
func (a *HomeNSAns) header() *Header  { return &a.Header }
func (a *HomeNSAns) result() Result   { return a.Result }

func (a *JoinAns) complete(req requestInfo) error   { return completeJoinAns(a, req) }
func (a *RejoinAns) complete(req requestInfo) error { return completeJoinAns((*JoinAns)(a), req) }

func (a *AppSKeyAns) complete(requestInfo) error {
	if a.AppSKey == nil {
		return errString("AppSKeyAns Success without AppSKey")
	}
	return nil
}

func (a *HomeNSAns) complete(requestInfo) error {
	if a.HNetID == nil {
		return errString("HomeNSAns Success without HNetID")
	}
	return nil
}

func completeJoinAns(a *JoinAns, req requestInfo) error {
	if n := len(a.PHYPayload); n != 17 && n != 33 {
		return errString("join-accept PHYPayload must be 17 or 33 bytes")
	}
	if a.PHYPayload[0] != 0x20 {
		return errString("PHYPayload is not a join-accept (MHDR must be 0x20)")
	}
	if req.macVersion.Is11() {
		if a.FNwkSIntKey == nil || a.SNwkSIntKey == nil || a.NwkSEncKey == nil {
			return errString("LoRaWAN 1.1 answer without FNwkSIntKey, SNwkSIntKey and NwkSEncKey")
		}
	} else if a.NwkSKey == nil && a.FNwkSIntKey == nil {
		return errString("LoRaWAN 1.0 answer without NwkSKey")
	}
	if a.AppSKey == nil && len(a.SessionKeyID) == 0 {
		return errString("answer has neither AppSKey nor SessionKeyID")
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }
