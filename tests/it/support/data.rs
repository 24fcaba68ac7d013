//! Test data shared by scenarios: documents with every BSON type, and `_id`s of every type.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{
    doc, Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp,
};

/// A document with every BSON type the server stores, in a fixed field order.
pub fn every_type(id: Bson) -> Document {
    doc! {
        "_id": id,
        "double": 1.5,
        "negZero": -0.0,
        "nan": f64::NAN,
        "inf": f64::INFINITY,
        "string": "héllo \u{1F600}",
        "document": { "z": 1, "a": { "deep": [1, { "x": null }] } },
        "array": [1, "two", 3.0, [4], { "five": 5 }],
        "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, 255] },
        "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] },
        "userBinary": Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: vec![9] },
        "undefined": Bson::Undefined,
        "objectId": ObjectId::parse_str("5f0c8a3e2b1d4c6e8f9a0b1c").unwrap(),
        "true": true,
        "false": false,
        "date": DateTime::from_millis(1_700_000_000_123),
        "oldDate": DateTime::from_millis(-62_135_596_800_000),
        "null": null,
        "regex": Regex { pattern: "^a.*b$".into(), options: "imsx".into() },
        "code": Bson::JavaScriptCode("function () { return 1; }".into()),
        "symbol": Bson::Symbol("sym".into()),
        "codeWithScope": JavaScriptCodeWithScope {
            code: "function () { return x; }".into(),
            scope: doc! { "x": 1 },
        },
        "int32": i32::MIN,
        "timestamp": Timestamp { time: 1_700_000_000, increment: 7 },
        "int64": i64::MAX,
        "decimal": "1234.5678".parse::<Decimal128>().unwrap(),
        "minKey": Bson::MinKey,
        "maxKey": Bson::MaxKey,
    }
}

/// `_id`s of every type an `_id` may have, in no particular order.
pub fn mixed_ids() -> Vec<Bson> {
    vec![
        Bson::Int32(3),
        Bson::Int64(-4),
        Bson::Double(2.5),
        "1234.5"
            .parse::<Decimal128>()
            .map(Bson::Decimal128)
            .unwrap(),
        Bson::String("b".into()),
        Bson::String(String::new()),
        Bson::Symbol("sym".into()),
        Bson::Document(doc! { "k": 1, "j": "z" }),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![1, 2],
        }),
        Bson::ObjectId(ObjectId::parse_str("65a0000000000000000000aa").unwrap()),
        Bson::Boolean(false),
        Bson::DateTime(DateTime::from_millis(5)),
        Bson::Timestamp(Timestamp {
            time: 9,
            increment: 9,
        }),
        Bson::Null,
        Bson::MinKey,
        Bson::MaxKey,
    ]
}
