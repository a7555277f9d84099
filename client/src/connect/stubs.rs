//! The gRPC clients of rkm's services, each with the message limits of
//! `rkm_proto::access::limits`: requests up to the service's largest, so
//! an oversized one fails here with tonic's word rather than being sent,
//! and responses up to `MAX_RESPONSE_MESSAGE`, rkmd's own limit.

use rkm_proto::access::limits::{MAX_RESPONSE_MESSAGE, service_max_message};
use rkm_proto::v1::access_service_client::AccessServiceClient;
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use rkm_proto::v1::custodian_service_client::CustodianServiceClient;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::system_service_client::SystemServiceClient;
use tonic::transport::Channel;

macro_rules! stub {
    ($(#[$doc:meta])* $name:ident, $client:ident, $service:literal) => {
        $(#[$doc])*
        pub fn $name(channel: Channel) -> $client<Channel> {
            $client::new(channel)
                .max_encoding_message_size(service_max_message($service))
                .max_decoding_message_size(MAX_RESPONSE_MESSAGE)
        }
    };
}

stub!(
    /// `AccessService`: challenges and who-am-I.
    access, AccessServiceClient, "rkm.v1.AccessService"
);
stub!(
    /// `AuditService`: checkpoints, entries, proofs and notes.
    audit, AuditServiceClient, "rkm.v1.AuditService"
);
stub!(
    /// `CustodianService`: enrolment, listing and notices.
    custodian, CustodianServiceClient, "rkm.v1.CustodianService"
);
stub!(
    /// `KeyService`: key ceremonies, envelopes, receipts and imports.
    key, KeyServiceClient, "rkm.v1.KeyService"
);
stub!(
    /// `RecoveryService`: recoveries, drills, approvals and artefacts.
    recovery, RecoveryServiceClient, "rkm.v1.RecoveryService"
);
stub!(
    /// `SystemService`: status.
    system, SystemServiceClient, "rkm.v1.SystemService"
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_service_names_are_the_generated_ones() {
        use rkm_proto::v1::{
            access_service_server::AccessServiceServer as A,
            audit_service_server::AuditServiceServer as B,
            custodian_service_server::CustodianServiceServer as C,
            key_service_server::KeyServiceServer as D,
            recovery_service_server::RecoveryServiceServer as E,
            system_service_server::SystemServiceServer as F,
        };
        assert_eq!(
            [
                <A<()> as tonic::server::NamedService>::NAME,
                <B<()> as tonic::server::NamedService>::NAME,
                <C<()> as tonic::server::NamedService>::NAME,
                <D<()> as tonic::server::NamedService>::NAME,
                <E<()> as tonic::server::NamedService>::NAME,
                <F<()> as tonic::server::NamedService>::NAME,
            ],
            [
                "rkm.v1.AccessService",
                "rkm.v1.AuditService",
                "rkm.v1.CustodianService",
                "rkm.v1.KeyService",
                "rkm.v1.RecoveryService",
                "rkm.v1.SystemService",
            ]
        );
    }
}
