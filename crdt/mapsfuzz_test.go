package crdt

import "testing"

func FuzzDecodeResetCounter(f *testing.F) {
	fuzzDecode[rcounterW, *rcounterW, ResetCounter](f, mutResetCounter)
}

func FuzzMergeResetCounter(f *testing.F) {
	fuzzMerge[rcounterW, *rcounterW, ResetCounter](f, mutResetCounter)
}

func FuzzDecodePNCounterMap(f *testing.F) {
	fuzzDecode[pnmapW, *pnmapW, PNCounterMap[string]](f, mutPNCounterMap)
}

func FuzzMergePNCounterMap(f *testing.F) {
	fuzzMerge[pnmapW, *pnmapW, PNCounterMap[string]](f, mutPNCounterMap)
}

func FuzzDecodeLWWMap(f *testing.F) {
	fuzzDecode[lwwmapW, *lwwmapW, LWWMap[string, int]](f, mutLWWMap, decodeAny[LWWMap[string, any]])
}

func FuzzMergeLWWMap(f *testing.F) {
	fuzzMerge[lwwmapW, *lwwmapW, LWWMap[string, int]](f, mutLWWMap)
}

func FuzzDecodeORMultiMap(f *testing.F) {
	fuzzDecode[multiW, *multiW, ORMultiMap[string, int]](f, mutMultiMap)
}

func FuzzMergeORMultiMap(f *testing.F) {
	fuzzMerge[multiW, *multiW, ORMultiMap[string, int]](f, mutMultiMap)
}

func FuzzDecodeDWFlagMap(f *testing.F) {
	fuzzDecode[dwmapW, *dwmapW, ORMap[string, DWFlag]](f, mutDWMap)
}

func FuzzMergeDWFlagMap(f *testing.F) {
	fuzzMerge[dwmapW, *dwmapW, ORMap[string, DWFlag]](f, mutDWMap)
}

func FuzzDecodeCounterDoc(f *testing.F) {
	fuzzDecode[docW, *docW, docMap](f, mutDoc)
}

func FuzzMergeCounterDoc(f *testing.F) {
	fuzzMerge[docW, *docW, docMap](f, mutDoc)
}

func FuzzDecodeMap(f *testing.F) {
	fuzzDecode[mixW, *mixW, Map](f, mutMixed)
}

func FuzzMergeMap(f *testing.F) {
	fuzzMerge[mixW, *mixW, Map](f, mutMixed)
}
