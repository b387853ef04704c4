use super::*;

fn hex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn esp_in_udp_is_a_carrier_only_tunnel() {
    let frame = hex(
        "10 00 00 64 64 45 10 00 00 64 64 23 08 00 45 00 00 90 a6 0e 00 00 40 11 50 08 c0 01 02 17 c0 01 02 2d 11 94 11 94 00 7c 00 00 12 34 56 78 00 00",
    );
    let mut padded = frame.clone();
    padded.resize(14 + 144, 0xab);
    let d = decode(1, &padded).unwrap();
    assert!(d.carrier_only, "{d:?}");
    assert_eq!(d.tunnel, Some(TunnelKind::EspInUdp));
}
