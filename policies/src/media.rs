//! Images lose their hidden metadata before they reach a case room: EXIF (camera, time, GPS
//! position), XMP and IPTC can tell where a client lives or hides. The pixels are untouched (no
//! re-encoding) and the record keeps the original.

use img_parts::{jpeg, png, webp, Bytes, ImageEXIF};

/// The image without its metadata, or `None` when `mime` is no image this handles or the bytes
/// cannot be read as one (the caller then decides; the gateway sends such a file as it came
/// only if it is not an image).
pub fn strip_metadata(mime: &str, data: &[u8]) -> Option<Vec<u8>> {
    let bytes = Bytes::copy_from_slice(data);
    match mime.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => {
            let mut image = jpeg::Jpeg::from_bytes(bytes).ok()?;
            // APP1 holds EXIF and XMP, APP13 Photoshop/IPTC; APP0 (JFIF) and APP2 (colour
            // profile) stay, as do comments' absence: COM can hold anything, so it goes too.
            image.segments_mut().retain(|s| {
                !matches!(
                    s.marker(),
                    jpeg::markers::APP1 | jpeg::markers::APP13 | jpeg::markers::COM
                )
            });
            Some(image.encoder().bytes().to_vec())
        }
        "image/png" => {
            let mut image = png::Png::from_bytes(bytes).ok()?;
            image.set_exif(None);
            image
                .chunks_mut()
                .retain(|c| !matches!(&c.kind(), b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME"));
            Some(image.encoder().bytes().to_vec())
        }
        "image/webp" => {
            let mut image = webp::WebP::from_bytes(bytes).ok()?;
            image.set_exif(None);
            image.chunks_mut().retain(|c| &c.id() != b"XMP ");
            Some(image.encoder().bytes().to_vec())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_metadata;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() + 2) as u16;
        let mut s = vec![0xFF, marker];
        s.extend(len.to_be_bytes());
        s.extend(payload);
        s
    }

    #[test]
    fn gps_and_camera_data_leave_jpeg_pixels_stay() {
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        jpeg.extend(segment(
            0xE1,
            b"Exif\0\0MM\0*GPSLatitude 59.3293 N GPSLongitude 18.0686 E",
        ));
        jpeg.extend(segment(
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS</x:xmpmeta>",
        ));
        jpeg.extend(segment(0xFE, b"taken at Storgatan 4"));
        jpeg.extend(segment(0xDB, &[0u8; 65]));
        jpeg.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        jpeg.extend([0x12, 0x34, 0x56, 0x78, 0xFF, 0xD9]);
        let out = strip_metadata("image/jpeg", &jpeg).unwrap();
        let text = String::from_utf8_lossy(&out);
        for gone in ["Exif", "GPS", "59.3293", "xmpmeta", "Storgatan"] {
            assert!(!text.contains(gone), "{gone} is still in the image");
        }
        assert!(out.starts_with(&[0xFF, 0xD8]));
        assert!(text.contains("JFIF"));
        assert!(
            out.ends_with(&[0x12, 0x34, 0x56, 0x78, 0xFF, 0xD9]),
            "scan data kept"
        );
        assert_eq!(strip_metadata("application/pdf", &jpeg), None);
        assert_eq!(strip_metadata("image/jpeg", b"not a jpeg"), None);
    }
}
