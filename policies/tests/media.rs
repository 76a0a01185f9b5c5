//! Real images of every type a phone or mail program sends, each carrying a GPS position in EXIF
//! and XMP (and IPTC where the type has it): what `media::clean` makes of them must have none of
//! it left and still be an image of the same type. The fixtures and how they were made:
//! `tests/fixtures/README.md`.

use std::io::Cursor;

use casebridge_policies::media::{clean, Cleaned};

/// (file, declared type, the type the `image` crate must read back; None where pure Rust cannot
/// decode it: HEVC, AV1).
const FIXTURES: [(&str, &str, Option<image::ImageFormat>); 7] = [
    ("gps.jpg", "image/jpeg", Some(image::ImageFormat::Jpeg)),
    ("gps.png", "image/png", Some(image::ImageFormat::Png)),
    ("gps.webp", "image/webp", Some(image::ImageFormat::WebP)),
    ("gps.gif", "image/gif", Some(image::ImageFormat::Gif)),
    ("gps.tif", "image/tiff", Some(image::ImageFormat::Tiff)),
    ("gps.heic", "image/heic", None),
    ("gps.avif", "image/avif", None),
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// What the fixtures were given: the street of the XMP description and IPTC city, the camera
/// make, XMP's form of the latitude, the XMP namespace, EXIF's header (with its byte order: HEIF's
/// item list names the type "Exif" alone), and EXIF's rational
/// 59/1 (the latitude's degrees) in both byte orders.
const TRACES: [&[u8]; 9] = [
    b"Storgatan",
    b"CasebridgeCam",
    b"59,19.758N",
    b"http://ns.adobe.com/xap",
    b"GPS",
    b"Exif\0\0MM",
    b"Exif\0\0II",
    b"\0\0\0\x3b\0\0\0\x01",
    b"\x3b\0\0\0\x01\0\0\0",
];

fn traces(bytes: &[u8]) -> Vec<String> {
    TRACES
        .iter()
        .filter(|t| bytes.windows(t.len()).any(|w| w == **t))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

/// The GPS fields kamadak-exif finds (it reads JPEG, PNG, WebP, TIFF and HEIF).
fn gps_fields(bytes: &[u8]) -> usize {
    match exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) {
        Ok(exif) => exif
            .fields()
            .filter(|f| f.tag.context() == exif::Context::Gps)
            .count(),
        Err(_) => 0,
    }
}

#[test]
fn every_image_type_loses_its_location_and_stays_an_image() {
    for (name, mime, format) in FIXTURES {
        let original = fixture(name);
        // The fixture has what the test looks for, or the test would prove nothing.
        assert!(
            traces(&original).len() >= 4,
            "{name}: {:?}",
            traces(&original)
        );
        if name != "gps.gif" {
            assert!(gps_fields(&original) > 0, "{name} has EXIF GPS");
        }
        let Cleaned::Clean(out) = clean(mime, &original) else {
            panic!("{name} was not cleaned: {:?}", clean(mime, &original));
        };
        assert_eq!(traces(&out), Vec::<String>::new(), "{name}");
        assert_eq!(gps_fields(&out), 0, "{name}");
        match format {
            Some(format) => {
                assert_eq!(image::guess_format(&out).unwrap(), format, "{name}");
                let decoded = image::load_from_memory_with_format(&out, format)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!((decoded.width(), decoded.height()), (24, 16), "{name}");
                let before = image::load_from_memory_with_format(&original, format).unwrap();
                assert_eq!(decoded.to_rgba8(), before.to_rgba8(), "{name}: same pixels");
            }
            None => {
                // In place: same size, the item table (ftyp and meta boxes) as it was, only the
                // metadata items' bytes zeroed.
                assert_eq!(out.len(), original.len(), "{name}");
                let size = |at: usize| u32::from_be_bytes(out[at..at + 4].try_into().unwrap());
                let head = size(0) as usize;
                assert_eq!(&out[head + 4..head + 8], b"meta");
                let head = head + size(head) as usize;
                assert_eq!(out[..head], original[..head], "{name}");
                assert_ne!(out, original, "{name}");
                // Pure Rust cannot decode HEVC or AV1: this lets libheif's heif-convert show
                // by hand that the cleaned file is the same picture.
                if let Ok(dir) = std::env::var("CASEBRIDGE_MEDIA_OUT") {
                    std::fs::write(format!("{dir}/clean-{name}"), &out).unwrap();
                }
                assert_eq!(clean(mime, &out), Cleaned::Clean(out.clone()), "{name}");
            }
        }
        // The declared type does not matter: the bytes say what it is.
        assert_eq!(
            clean("application/octet-stream", &original),
            Cleaned::Clean(out.clone()),
            "{name}"
        );
        assert_eq!(clean("image/gif", &original), Cleaned::Clean(out), "{name}");
    }
}

#[test]
fn a_cut_off_image_is_withheld_not_shown() {
    for (name, mime, _) in FIXTURES {
        let original = fixture(name);
        let cut = &original[..original.len() * 2 / 3];
        assert!(
            matches!(clean(mime, cut), Cleaned::Withheld { .. }),
            "{name}: {:?}",
            clean(mime, cut)
        );
    }
}
