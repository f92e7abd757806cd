//! What both benchmarks post.

/// A Plex webhook body as Plex sends it: the JSON `payload` part and a 40 KiB `thumb` JPEG.
pub fn multipart(payload: &str) -> (String, Vec<u8>) {
    let boundary = "------------------------a1b2c3d4e5f6a7b8";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json\r\n\r\n{payload}\r\n").as_bytes());
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"image.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes());
    body.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    body.extend(std::iter::repeat_n(0x5Au8, 40 * 1024));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
