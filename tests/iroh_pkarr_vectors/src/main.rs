//! Prints signed address records made by iroh-dns, as JSON test vectors for ringdrop.

use iroh_base::{SecretKey, TransportAddr};
use iroh_dns::endpoint_info::{EndpointData, EndpointInfo};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let cases: [(&str, [u8; 32], &str, &[&str]); 2] = [
        (
            "relay only",
            [7; 32],
            "https://euc1-1.relay.n0.iroh.link./",
            &[],
        ),
        (
            "relay and addresses",
            [42; 32],
            "http://127.0.0.1:3340/",
            &["192.0.2.7:52100", "[2001:db8::1]:52100"],
        ),
    ];
    let mut out = Vec::new();
    for (name, seed, relay, addrs) in cases {
        let secret = SecretKey::from_bytes(&seed);
        let mut list = vec![TransportAddr::Relay(relay.parse().expect("relay URL"))];
        list.extend(
            addrs
                .iter()
                .map(|a| TransportAddr::Ip(a.parse().expect("address"))),
        );
        let info = EndpointInfo::from_parts(secret.public(), EndpointData::from_iter(list));
        let packet = info.to_pkarr_signed_packet(&secret, 30).expect("packet");
        let txt: Vec<String> = info
            .to_txt_strings()
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        out.push(format!(
            "  {{\"name\": {name:?}, \"seed\": \"{}\", \"key_z32\": \"{}\", \"ttl\": 30,\n   \
             \"txt\": [{}],\n   \"timestamp\": {}, \"signed_packet\": \"{}\"}}",
            hex(&seed),
            secret.public().to_z32(),
            txt.join(", "),
            packet.timestamp().as_micros(),
            hex(packet.as_bytes()),
        ));
    }
    println!("[\n{}\n]", out.join(",\n"));
}
